"""The dashboard in a real browser (Debian's chromium via Playwright) over `bentoml serve`.

One server for the module: the toy model behind an API token, a running experiment and
some served, clicked lists. Every page is opened; what it shows is compared with the
APIs' answers; any console error, page exception or request to another host fails.
Screenshots of each page go to ``$RECBENTO_DASHBOARD_SHOTS`` (default: a temporary folder).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from tests.browser import browser, count, fixed, pct
from tests.procs import free_port, serve, stop

pytestmark = pytest.mark.integration

TOKEN = "dash-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def server(toy_model, tmp_path_factory):
    """`bentoml serve` of the toy model with an experiment running and lists served."""
    from recommender.experiments import Arm, Experiment, start_experiment
    from recommender.feedback import open_store

    db = str(tmp_path_factory.mktemp("dash") / "feedback.db")
    with open_store(db) as store:
        arms = (Arm("control", toy_model, 0.5), Arm("fresh", toy_model, 0.5))
        start_experiment(store, Experiment("ranker-test", arms))
    port = free_port()
    proc = serve(
        "svc-toy",
        port,
        env={"RECBENTO_FEEDBACK_DB": db, "RECBENTO_API_TOKEN": TOKEN, "RECBENTO_WORKERS": "1"},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        served = 0
        for n in range(24):  # cold users: their clicks leave the toy users' histories alone
            user = f"visitor{n}"
            r = httpx.post(f"{url}/recommend", json={"user_id": user, "k": 3}, timeout=30)
            assert r.status_code == 200, r.text
            served += 1
            if n % 3 == 0:
                out = r.json()
                ev = {
                    "user_id": user,
                    "item_id": out["items"][0]["item_id"],
                    "timestamp": int(time.time()),
                    "type": "click",
                    "request_id": out["request_id"],
                }
                r = httpx.post(f"{url}/feedback", json={"events": [ev]}, headers=AUTH, timeout=30)
                assert r.status_code == 200, r.text
        for _ in range(100):  # impressions are written off the request path
            rows = api(url, "online_metrics", {"by": []})["rows"]
            if rows and rows[0]["impressions"] == served:
                break
            time.sleep(0.1)
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    out = os.environ.get("RECBENTO_DASHBOARD_SHOTS")
    path = Path(out) if out else tmp_path_factory.mktemp("shots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def tab(server):
    """One browser tab for the module, signed in with the token through the page."""
    with browser() as w:
        w.goto(f"{server}/dashboard/", "overview")
        # without the token the data endpoints refuse, and the page says what to do
        assert "needs its API token" in w.page.inner_text("#error")
        assert w.console_errors and all("401" in m for m in w.console_errors)
        w.console_errors.clear()
        w.page.fill("#token", TOKEN)
        w.page.click("#token-form button")
        w.page.wait_for_selector("[data-testid='n_items']")
        w.wait_page("overview")
        yield w
        assert all(r.startswith(server) or r.startswith("data:") for r in w.requests)


@pytest.fixture(autouse=True)
def _no_problems(request):
    yield
    if "tab" in request.fixturenames:
        w = request.getfixturevalue("tab")
        problems = w.problems()
        w.console_errors.clear()
        w.page_errors.clear()
        assert not problems, problems


def api(url: str, path: str, body: dict | None = None) -> dict:
    if body is None:
        r = httpx.get(f"{url}/dashboard/api/{path}", headers=AUTH, timeout=30)
    else:
        r = httpx.post(f"{url}/{path}", json=body, headers=AUTH, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def series(w, selector: str) -> dict[str, list]:
    """The data of each series the ECharts chart at ``selector`` drew, by series name."""
    return dict(
        w.page.evaluate(
            """sel => echarts.getInstanceByDom(document.querySelector(sel)).getOption().series
                .map(s => [s.name, s.data])""",
            selector,
        )
    )


def texts(w, selector: str) -> list[str]:
    return [t.strip() for t in w.page.locator(selector).all_inner_texts()]


def test_overview_shows_the_apis_figures(server, tab, shots):
    ov = api(server, "overview")
    for key in ("n_items", "n_users", "n_interactions", "n_feedback_events", "n_groups"):
        assert tab.page.inner_text(f"[data-testid='{key}']") == count(ov[key]), key
    assert tab.page.inner_text("[data-testid='model']") == ov["model"]
    assert tab.page.inner_text("#model-tag") == ov["model"]
    assert "not trained" in tab.page.inner_text("[data-testid='quality']")
    rows = api(server, "online_metrics", {"by": ["day", "arm"]})["rows"]
    assert {r["arm"] for r in rows} == {"control", "fresh"}
    shown = "[data-testid='online-table'] tbody td"
    assert texts(tab, f"{shown}[data-col='impressions']") == [count(r["impressions"]) for r in rows]
    assert texts(tab, f"{shown}[data-col='ctr']") == [pct(r["ctr"]) for r in rows]
    assert texts(tab, f"{shown}[data-col='hit_rate']") == [pct(r["hit_rate"]) for r in rows]
    # the chart draws the same figures: per arm, CTR and hit rate by day
    drawn = series(tab, "#online-chart")
    days = sorted({r["day"] for r in rows})
    for r in rows:
        at = days.index(r["day"])
        assert drawn[f"{r['arm']} · CTR"][at] == pytest.approx(r["ctr"])
        assert drawn[f"{r['arm']} · hit rate"][at] == pytest.approx(r["hit_rate"])
    tab.page.screenshot(path=shots / "overview.png", full_page=True)


def _rec_ids(w) -> list[int]:
    return [
        int(i)
        for i in w.page.locator("[data-rec]").evaluate_all("els => els.map(e => e.dataset.rec)")
    ]


def test_user_page_lists_what_recommend_answers_and_knobs_rerank(server, tab, shots):
    tab.page.click("nav a[data-nav='users']")
    tab.wait_page("users")
    listed = [int(t) for t in texts(tab, "[data-testid='users'] td[data-col='user']")]
    assert listed == [u["user_id"] for u in api(server, "users?limit=100")["users"]]
    tab.page.click("a[data-user='10']")
    tab.wait_page("user")
    history = api(server, "users/10?limit=20")["history"]
    assert texts(tab, "[data-testid='history'] td[data-col='item']") == [
        h["title"] for h in history
    ]
    answer = api(server, "recommend", {"user_id": 10, "k": 10, "explain": True})
    assert _rec_ids(tab) == [i["item_id"] for i in answer["items"]]
    assert texts(tab, "[data-rec] > a") == [i["title"] for i in answer["items"]]
    meta = tab.page.inner_text("[data-testid='rec-meta']")
    assert f"Group {answer['group']}" in meta and f"arm {answer['arm']}" in meta
    tab.page.screenshot(path=shots / "user.png", full_page=True)

    # a knob re-ranks the list live, as the API does with the same knob
    tab.page.locator("input[name='diversity']").fill("1")
    tab.page.wait_for_selector("""[data-testid='recommendations'][data-knobs='{"diversity":1}']""")
    knobbed = api(
        server, "recommend", {"user_id": 10, "k": 10, "explain": True, "knobs": {"diversity": 1}}
    )
    assert _rec_ids(tab) == [i["item_id"] for i in knobbed["items"]]
    assert _rec_ids(tab) != [i["item_id"] for i in answer["items"]]
    tab.page.click("[data-testid='knobs'] button")
    tab.page.wait_for_selector("[data-testid='recommendations'][data-knobs='{}']")
    assert _rec_ids(tab) == [i["item_id"] for i in answer["items"]]


def test_click_user_recommendation_reason_item(server, tab, shots):
    tab.goto(f"{server}/dashboard/#/user/10", "user")
    answer = api(server, "recommend", {"user_id": 10, "k": 10, "explain": True})
    first = answer["items"][0]
    reason = first["reasons"][0]
    assert reason["from_item"] in (1, 2)  # user 10's history: Heat, Collateral
    rec = tab.page.locator(f"[data-rec='{first['item_id']}']")
    assert reason["text"] in rec.inner_text()
    rec.locator(f"a[data-reason='{reason['from_item']}']").first.click()
    tab.wait_page("item")
    assert tab.page.inner_text("[data-testid='item-title']") == reason["from_title"]
    tab.page.go_back()
    tab.wait_page("user")
    tab.page.click(f"[data-rec='{first['item_id']}'] > a")
    tab.wait_page("item")
    assert tab.page.inner_text("[data-testid='item-title']") == first["title"]


def test_item_page_shows_details_similar_items_and_graph(server, tab, shots):
    tab.goto(f"{server}/dashboard/#/item/1", "item")
    item = api(server, "items/1?radius=2&max_nodes=36")
    assert tab.page.inner_text("[data-testid='item-title']") == item["title"] == "Heat (1995)"
    details = tab.page.inner_text("[data-testid='details']")
    assert "Michael Mann" in details and f"interactions\t{item['interactions']}" in details
    similar = api(server, "similar_items", {"item_id": "1", "k": 10})["items"]
    assert texts(tab, "[data-testid='similar'] td[data-col='item']") == [
        s["title"] for s in similar
    ]
    graph = tab.page.locator("[data-testid='graph']")
    assert int(graph.get_attribute("data-nodes")) == len(item["graph"]["nodes"]) > 3
    drawn = series(tab, "#kg-chart")["neighbourhood"]
    assert {(n["id"], round(n["x"] / 1000, 4), round(-n["y"] / 1000, 4)) for n in drawn} == {
        (n["id"], n["x"], n["y"]) for n in item["graph"]["nodes"]
    }
    tab.page.screenshot(path=shots / "item.png", full_page=True)


def test_groups_page_shows_portraits_and_the_user_map(server, tab, shots):
    tab.page.click("nav a[data-nav='groups']")
    tab.wait_page("groups")
    groups = api(server, "groups", {})
    sizes = texts(tab, "[data-testid='portraits'] [data-col='size']")
    assert sizes == [count(g["size"]) for g in groups["groups"]]
    points = api(server, "user_map")["points"]
    chart = tab.page.locator("[data-testid='map']")
    assert int(chart.get_attribute("data-points")) == len(points) == 4
    drawn = series(tab, "#map-chart")
    assert {name: len(pts) for name, pts in drawn.items()} == {
        f"group {g['group']}": g["size"] for g in groups["groups"]
    }
    tab.page.screenshot(path=shots / "groups.png", full_page=True)


def test_experiments_page_shows_arms_and_intervals(server, tab, shots):
    tab.page.click("nav a[data-nav='experiments']")
    tab.wait_page("experiments")
    (exp,) = api(server, "experiments")["experiments"]
    box = tab.page.locator("[data-experiment='ranker-test']")
    assert "(running)" in box.inner_text()
    shares = box.locator("[data-testid='arms'] td[data-col='share']").all_inner_texts()
    assert shares == [pct(a["share"]) for a in exp["arms"]] == ["50.0%", "50.0%"]
    rows = exp["metrics"]
    assert sum(r["impressions"] for r in rows) >= 24  # the lists served by the fixture
    cells = "[data-testid='metrics'] td"
    assert box.locator(f"{cells}[data-col='ctr']").all_inner_texts() == [
        pct(r["ctr"]) for r in rows
    ]
    assert box.locator(f"{cells}[data-col='ctr_ci']").all_inner_texts() == [
        f"{pct(r['ctr_low'])} – {pct(r['ctr_high'])}" for r in rows
    ]
    assert box.locator(f"{cells}[data-col='p_value']").all_inner_texts() == [
        fixed(r["p_value"], 3) for r in rows
    ]
    assert box.locator("[data-testid='verdict']").inner_text() == exp["verdict"]["message"]
    drawn = series(tab, "[data-experiment='ranker-test'] .chart")
    assert drawn["CTR"] == pytest.approx([r["ctr"] for r in rows])
    assert drawn["95% interval"] == [
        [i, pytest.approx(r["ctr_low"]), pytest.approx(r["ctr_high"])] for i, r in enumerate(rows)
    ]
    tab.page.screenshot(path=shots / "experiments.png", full_page=True)
