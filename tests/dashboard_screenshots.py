"""Pictures of every dashboard page on the demo model, for the README (docs/dashboard/).

    python -m tests.dashboard_screenshots --out docs/dashboard

In a private BentoML home: the demo model (copied from ``~/bentoml`` when it is there,
else built), its trained version (``recbento train``), an experiment between the two
with a simulated week of traffic replayed through the service's own online machinery
(:class:`~recommender.services.online.OnlineServing`, simulated clock), then one
`bentoml serve` and Debian's chromium, the browser tests' setup.

The simulated user looks at the first five items of a list and clicks each with a
chance of 12 % per genre it shares with the three genres the user watched most: a
stand-in for taste, the same for both arms (no arm is favoured by construction).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400.0


def replay_week(db: str, text_tag: str, trained_tag: str, *, users: int, seed: int = 0) -> None:
    """A week of lists and clicks for an experiment text-only vs trained, ending now."""
    import numpy as np
    from tqdm import tqdm

    from recommender.experiments import Arm, Experiment, start_experiment
    from recommender.feedback import open_store
    from recommender.refresh import attach_feedback, record_feedback
    from recommender.service_core import load
    from recommender.services.online import OnlineServing
    from recommender.serving import Request

    models = {t: load(t) for t in (text_tag, trained_tag)}
    trained = models[trained_tag]
    genres = trained.bundle.items["genres"].astype(str).str.split("|").tolist()
    rng = np.random.default_rng(seed)
    start = time.time() - 7 * DAY
    with open_store(db) as store:
        attach_feedback(trained, store)
        now = [start]
        online = OnlineServing(
            trained, store, loader=models.__getitem__, experiment_ttl=1e9, clock=lambda: now[0]
        )
        arms = (Arm("text-only", text_tag, 0.5), Arm("trained", trained_tag, 0.5))
        start_experiment(store, Experiment("tower-vs-text", arms), at=start)
        pool = rng.choice(trained.histories.user_ids(), size=users, replace=False).tolist()
        for day in tqdm(range(7), desc="simulated days"):
            for j, u in enumerate(pool):
                now[0] = start + day * DAY + 60 * j
                top = Counter(
                    g for i in trained.histories.get(u).items for g in genres[i]
                ).most_common(3)
                liked = {g for g, _ in top}
                out = online.recommend([Request(user_id=u, k=10)])[0]
                clicks = [
                    {
                        "user_id": u,
                        "item_id": it["item_id"],
                        "timestamp": int(now[0]) + 5 + n,
                        "type": "click",
                        "request_id": out["request_id"],
                    }
                    for n, it in enumerate(out["items"][:5])
                    if rng.random()
                    < 0.12 * len(liked & set(genres[trained.catalogue.row(it["item_id"])]))
                ]
                if clicks:
                    record_feedback(online.route(u)[0], store, clicks)
        online.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard")
    parser.add_argument("--users", type=int, default=120, help="simulated users per day")
    parser.add_argument("--user", default="414", help="the user the User page shows")
    parser.add_argument("--item", default="1", help="the item the Item page shows")
    parser.add_argument(
        "--reuse", type=Path, help="a BentoML home a previous run left: photograph it again"
    )
    args = parser.parse_args()

    home = str(args.reuse) if args.reuse else tempfile.mkdtemp(prefix="recbento-shots-")
    os.environ.update(
        BENTOML_HOME=home,
        BENTOML_DO_NOT_TRACK="True",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        RECBENTO_TRAIN_DEMO="0",
    )
    from recommender.build import DEMO_MODEL, build_demo, retrain

    db = str(Path(home) / "feedback.db")
    if args.reuse:
        take(args.out, db, user=args.user, item=args.item)
        return
    existing = Path.home() / "bentoml" / "models" / DEMO_MODEL
    if existing.is_dir():
        shutil.copytree(existing, Path(home) / "models" / DEMO_MODEL)
    else:
        build_demo()
    import bentoml

    versions = sorted(bentoml.models.list(DEMO_MODEL), key=lambda m: m.info.creation_time)
    text_tag = next(
        str(m.tag) for m in versions if "tower" not in (m.info.metadata.get("components") or [])
    )
    trained_tag = retrain(text_tag).tag
    replay_week(db, text_tag, trained_tag, users=args.users)
    take(args.out, db, user=args.user, item=args.item)
    print(f"screenshots in {args.out}; BentoML home {home} (delete it when done)")


def take(out: Path, db: str, *, user: str, item: str) -> None:
    """Serve the demo model's latest version and photograph each page into ``out``."""
    from recommender.build import DEMO_MODEL
    from tests.browser import browser
    from tests.procs import free_port, serve, stop

    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    proc = serve(DEMO_MODEL, port, env={"RECBENTO_FEEDBACK_DB": db}, timeout=300)
    url = f"http://127.0.0.1:{port}/dashboard/"
    try:
        with browser() as w:
            pages = [
                ("overview", "#/", "overview"),
                ("user", f"#/user/{user}", "user"),
                ("item", f"#/item/{item}", "item"),
                ("groups", "#/groups", "groups"),
                ("experiments", "#/experiments", "experiments"),
            ]
            for name, frag, page in pages:
                w.goto(url + frag, page)
                w.page.wait_for_timeout(500)  # charts redraw on the next animation frame
                w.page.screenshot(path=out / f"{name}.png", full_page=True)
            if w.problems():
                raise RuntimeError(f"the pages had problems: {w.problems()}")
    finally:
        stop(proc)
    _shrink(out)


def _shrink(out: Path) -> None:
    """Palette PNGs (a dashboard has few colours): each picture well under 300 kB."""
    from PIL import Image

    for png in sorted(out.glob("*.png")):
        img = Image.open(png).convert("RGB").quantize(colors=128, dither=Image.Dither.NONE)
        img.save(png, optimize=True)
        print(f"{png.name}: {png.stat().st_size / 1024:.0f} kB")


if __name__ == "__main__":
    main()
