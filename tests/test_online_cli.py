"""``recbento experiment start|show|stop`` and ``recbento report`` on a feedback store."""

from __future__ import annotations

import dataclasses

from typer.testing import CliRunner

from recommender.cli import app


def _arm_models(toy_bundle) -> tuple[str, str]:
    from recommender.bundle import save_to_store

    first = save_to_store(toy_bundle, "cli-ab")
    config = {**toy_bundle.config, "event_weights": {"like": 4.0}}
    return first, save_to_store(dataclasses.replace(toy_bundle, config=config), "cli-ab")


def _traffic(db, exp, ctr: dict[str, float], n: int = 300) -> None:
    """``n`` served lists per arm, the share ``ctr[arm]`` of them clicked."""
    from recommender.feedback import open_store
    from recommender.impressions import Impression, write_impressions

    with open_store(db) as store:
        imps, clicks = [], []
        for a in exp.arms:
            for j in range(n):
                rid = f"{a.name}-{j}"
                at = exp.started_at + 1 + j
                imps.append(Impression(rid, j, at, a.model, a.name, None, [(3, 0.9), (6, 0.5)]))
                if j < ctr[a.name] * n:
                    clicks.append(
                        {
                            "user_id": j,
                            "item_id": 3,
                            "timestamp": int(at) + 5,
                            "type": "click",
                            "request_id": rid,
                        }
                    )
        write_impressions(store, imps)
        store.append(clicks)


def test_experiment_lifecycle_and_report(toy_bundle, tmp_path) -> None:
    from recommender.experiments import get_experiment
    from recommender.feedback import open_store

    v1, v2 = _arm_models(toy_bundle)
    db = str(tmp_path / "fb.db")
    run = CliRunner().invoke
    out = run(
        app,
        [
            "experiment",
            "start",
            "ranker",
            "--arm",
            f"control={v1}@0.5",
            "--arm",
            "new=cli-ab@0.5",
            "--feedback-db",
            db,
        ],
    )
    assert out.exit_code == 0, out.output
    assert "running" in out.output and v2 in out.output  # the name resolved to a version
    again = run(
        app,
        [
            "experiment",
            "start",
            "other",
            "--arm",
            f"a={v1}@0.5",
            "--arm",
            f"b={v2}@0.5",
            "--feedback-db",
            db,
        ],
    )
    assert again.exit_code == 1 and "still running" in again.output

    with open_store(db) as store:
        exp = get_experiment(store, "ranker")
    _traffic(db, exp, {"control": 0.05, "new": 0.2})
    png = tmp_path / "ab.png"
    out = run(app, ["experiment", "show", "--feedback-db", db, "--plot", str(png)])
    assert out.exit_code == 0, out.output
    assert "new wins: CTR 20.00%" in out.output and png.stat().st_size > 1000

    report_png = tmp_path / "report.png"
    out = run(
        app,
        [
            "report",
            "--feedback-db",
            db,
            "--by",
            "arm",
            "--by",
            "day",
            "--plot",
            str(report_png),
            "--model",
            v1,
        ],
    )
    assert out.exit_code == 0, out.output
    assert "control" in out.output and "0.0500" in out.output and report_png.exists()
    bad = run(app, ["report", "--feedback-db", db, "--by", "colour"])
    assert bad.exit_code == 1 and "cannot slice or filter by 'colour'" in bad.output

    out = run(app, ["experiment", "stop", "ranker", "--feedback-db", db])
    assert out.exit_code == 0 and "stopped" in out.output
    none = run(app, ["experiment", "show", "--feedback-db", db])
    assert none.exit_code == 1 and "no experiment is running" in none.output


def test_no_significant_difference_keeps_the_control(toy_bundle, tmp_path) -> None:
    from recommender.experiments import Arm, Experiment, start_experiment
    from recommender.feedback import open_store

    v1, v2 = _arm_models(toy_bundle)
    db = str(tmp_path / "fb.db")
    with open_store(db) as store:
        exp = start_experiment(
            store, Experiment("tie", (Arm("control", v1, 0.5), Arm("new", v2, 0.5)))
        )
    _traffic(db, exp, {"control": 0.10, "new": 0.11}, n=200)
    out = CliRunner().invoke(app, ["experiment", "show", "tie", "--feedback-db", db])
    assert out.exit_code == 0, out.output
    assert "no arm beats control control" in out.output
