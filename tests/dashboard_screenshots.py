"""Pictures of every dashboard page on the demo model, for the README (docs/dashboard/).

    python -m tests.dashboard_screenshots --out docs/dashboard

In a private BentoML home, the demo log (MovieLens small) is split by time as the replay
benchmark does (:func:`benchmarks.replay.split_by_time`: each user's newest 20 % of
interactions are their *future*); the demo model is built on the earlier part and saved
(text-only), then its trained version is saved beside it (:func:`recommender.build.retrain`,
the library's default time cap). An experiment text-only vs trained then runs for a few
simulated days (default four, 300 users) through the service's own online machinery
(:class:`~recommender.services.online.OnlineServing`, simulated clock, the last days
before now): each day every chosen user asks for ten items and clicks a shown item if and
only if it is in their future (:func:`benchmarks.replay.click_through`), the same rule for
both arms, so neither is favoured by construction. Clicked items join the user's history
and are not shown again, so the daily CTR falls as each user's future is used up. Then
one `bentoml serve` of the trained version and Debian's chromium, the browser tests'
setup, photograph each page.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DAY = 86400.0


def run_experiment(db: str, *, users: int, rounds: int, seed: int = 0) -> None:
    """Save text-only and trained demo models built on the past; run the experiment."""
    import bentoml

    from benchmarks.replay import (
        click_through,
        demo_tables,
        demo_vectors,
        pick_users,
        split_by_time,
    )
    from recommender.build import DEMO_MODEL, build_bundle, retrain
    from recommender.bundle import save_to_store
    from recommender.experiments import Arm, Experiment, start_experiment
    from recommender.feedback import open_store
    from recommender.online_metrics import experiment_results
    from recommender.refresh import attach_feedback
    from recommender.service_core import load
    from recommender.services.online import OnlineServing

    tables = demo_tables()
    train, future, _ = split_by_time(tables)
    vectors, encoder = demo_vectors(tables)
    vectors = vectors.copy()  # the full-log copy only lends its vectors: off the store
    for m in bentoml.models.list(DEMO_MODEL):
        bentoml.models.delete(m.tag)
    text_tag = save_to_store(build_bundle(train, encoder, item_vectors=vectors), DEMO_MODEL)
    trained_tag = retrain(text_tag).tag
    models = {t: load(t) for t in (text_tag, trained_tag)}
    trained = models[trained_tag]
    start = time.time() - (rounds + 1) * DAY
    with open_store(db) as store:
        attach_feedback(trained, store)
        now = [start]
        online = OnlineServing(
            trained, store, loader=models.__getitem__, experiment_ttl=1e9, clock=lambda: now[0]
        )
        arms = (Arm("text-only", text_tag, 0.5), Arm("trained", trained_tag, 0.5))
        exp = start_experiment(store, Experiment("tower-vs-text", arms), at=start)
        chosen = pick_users(train, future, users, seed)
        click_through(online, store, now, chosen, future, rounds=rounds, k=10, start=start)
        online.close()
        table, verdict = experiment_results(store, exp, n_items=len(tables.items))
    cols = ["arm", "impressions", "clicks", "ctr", "ctr_low", "ctr_high", "p_value"]
    print(table[cols].to_string(index=False))
    print(verdict["message"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard")
    parser.add_argument("--users", type=int, default=300, help="simulated users per day")
    parser.add_argument("--rounds", type=int, default=4, help="simulated days")
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
    from recommender.build import DEMO_MODEL

    db = str(Path(home) / "feedback.db")
    if args.reuse:
        take(args.out, db, user=args.user, item=args.item)
        return
    existing = Path.home() / "bentoml" / "models" / DEMO_MODEL
    if existing.is_dir():  # its item vectors spare encoding the catalogue again
        shutil.copytree(existing, Path(home) / "models" / DEMO_MODEL)
    run_experiment(db, users=args.users, rounds=args.rounds)
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
