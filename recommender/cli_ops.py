"""``recbento refresh``: operations on a deployed model (feedback folded into a new version)."""

from __future__ import annotations

import logging
from typing import Annotated

import typer

__all__ = ["copy_feedback", "refresh"]

log = logging.getLogger(__name__)


def refresh(
    model: Annotated[
        str | None,
        typer.Option(
            "--model",
            "-m",
            help="Model name or name:version (default: what the deployment serves: "
            "$RECBENTO_MODEL, else the Bento's model, followed to its newest refresh).",
        ),
    ] = None,
    feedback_db: Annotated[
        str | None,
        typer.Option(
            "--feedback-db",
            help="Feedback store: a SQLite file or a postgresql:// URL (default "
            "$RECBENTO_FEEDBACK_DB, else the model's own SQLite file).",
        ),
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="Save under this name (default the model's).")
    ] = None,
    retrain: Annotated[
        bool,
        typer.Option(
            "--retrain",
            help="Also train the user tower on the new log, starting from the previous "
            "version's tower and its settings.",
        ),
    ] = False,
) -> None:
    """Fold the stored feedback events into a new version of the model; print its tag.

    A server following the model (served by name, or sharing RECBENTO_MODEL_STORE)
    swaps the new version in within RECBENTO_RELOAD_SECONDS and replays the events
    stored after it, so no event is lost.
    """
    from rich.table import Table

    from recommender.cli import _run, console
    from recommender.refresh import refresh as do_refresh

    report = _run(do_refresh, model, feedback_db=feedback_db, name=name, retrain=retrain)
    table = Table(title=f"refreshed {report.previous}")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("events folded", str(report.n_events))
    table.add_row("events skipped (unknown items)", str(report.n_skipped))
    table.add_row("users", str(report.n_users))
    table.add_row("interactions", str(report.n_interactions))
    table.add_row("feedback seq", str(report.feedback_seq))
    for step, s in report.seconds.items():
        table.add_row(f"{step} (s)", f"{s:.2f}")
    if report.training:
        tr = report.training
        table.add_row("training epochs (best)", f"{tr['epochs']} ({tr['best_epoch']})")
        table.add_row("training stopped by", str(tr["stopped_by"]).replace("_", " "))
    console.print(table)
    console.print(report.tag, soft_wrap=True)


def copy_feedback(
    source: Annotated[
        str, typer.Option("--source", help="The store to copy: a SQLite file or a URL.")
    ],
    target: Annotated[
        str, typer.Option("--target", help="An empty store: a postgresql:// URL or a file.")
    ],
) -> None:
    """Copy every feedback event into an empty store, each keeping its sequence number.

    Move from SQLite to PostgreSQL with this: models refreshed from the old store then
    replay exactly the events they have not folded in.
    """
    from recommender.cli import _run, console
    from recommender.refresh import copy_feedback as do_copy

    n = _run(do_copy, source, target)
    console.print(f"copied {n} feedback events")
