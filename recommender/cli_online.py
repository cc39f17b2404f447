"""``recbento report`` and ``recbento experiment start|show|stop``: the online side.

Both read (and ``experiment start|stop`` write) the feedback store a deployment serves
from, so what they show and set is what every replica sees.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer

__all__ = ["experiment_app", "report"]

log = logging.getLogger(__name__)

experiment_app = typer.Typer(
    help="A/B experiments: model versions served side by side, users split by a hash.",
    no_args_is_help=True,
)

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--feedback-db",
        help="Feedback store: a SQLite file or a postgresql:// URL (default "
        "$RECBENTO_FEEDBACK_DB, else the --model's own SQLite file).",
    ),
]
ModelOpt = Annotated[
    str | None,
    typer.Option("--model", "-m", help="The served model (its store, its catalogue size)."),
]


def report(
    feedback_db: DbOpt = None,
    model: ModelOpt = None,
    by: Annotated[
        list[str] | None,
        typer.Option("--by", help="Slice by model, arm, user_group, day (repeatable)."),
    ] = None,
    since: Annotated[
        str | None, typer.Option(help="Lists served from (ISO date/time or unix seconds).")
    ] = None,
    until: Annotated[str | None, typer.Option(help="Lists served before this time.")] = None,
    plot: Annotated[Path | None, typer.Option(help="Also write the metrics as a PNG.")] = None,
) -> None:
    """Online metrics of the served lists: CTR, conversion, hit rate, coverage, novelty."""
    from recommender.cli import _run, console
    from recommender.online_metrics import online_metrics, plot_metrics

    slices = by if by is not None else ["model", "arm"]
    with _store(feedback_db, model) as store:
        table = _run(
            online_metrics,
            store,
            by=slices,
            since=_time(since, "since"),
            until=_time(until, "until"),
            n_items=_n_items(model),
        )
    console.print(_table(table, title=f"online metrics by {', '.join(slices) or 'all'}"))
    if plot is not None and len(table):
        console.print(f"wrote {plot_metrics(table, plot)}")


@experiment_app.command("start")
def experiment_start(
    name: Annotated[str, typer.Argument(help="The experiment's name (never reused).")],
    arm: Annotated[
        list[str],
        typer.Option(
            "--arm",
            help="NAME=MODEL@SHARE, e.g. control=movies:abc123@0.5 (two or more; the "
            "first is the control; shares add up to 1).",
        ),
    ],
    feedback_db: DbOpt = None,
) -> None:
    """Start serving the arms side by side (every replica picks it up within seconds)."""
    from recommender.bundle import resolve_tag
    from recommender.cli import _run, console
    from recommender.experiments import Arm, Experiment, parse_arm, start_experiment

    arms = [_run(parse_arm, a) for a in arm]
    # pin each arm to an exact version, so a later build does not change what it serves
    arms = [Arm(a.name, _run(resolve_tag, a.model), a.share) for a in arms]
    exp = _run(Experiment, name, tuple(arms))
    with _store(feedback_db, arms[0].model) as store:
        started = _run(start_experiment, store, exp)
    console.print(_experiment_table(started))


@experiment_app.command("show")
def experiment_show(
    name: Annotated[
        str | None, typer.Argument(help="The experiment (default: the running one).")
    ] = None,
    feedback_db: DbOpt = None,
    model: ModelOpt = None,
    plot: Annotated[Path | None, typer.Option(help="Also write per-arm metrics as a PNG.")] = None,
) -> None:
    """The experiment's arms, their metrics with confidence intervals, and the verdict."""
    from recommender.cli import _fail, _run, console
    from recommender.errors import NotFoundError
    from recommender.experiments import active_experiment, get_experiment
    from recommender.online_metrics import experiment_results, plot_metrics

    with _store(feedback_db, model) as store:
        exp = _run(get_experiment, store, name) if name else _run(active_experiment, store)
        if exp is None:
            _fail(NotFoundError("no experiment is running; name one", field="name"))
        table, verdict = _run(experiment_results, store, exp, n_items=_n_items(model))
    console.print(_experiment_table(exp))
    console.print(_table(table, title=f"experiment {exp.name}: metrics per arm"))
    console.print(verdict["message"])
    if plot is not None and len(table):
        console.print(f"wrote {plot_metrics(table, plot, title=f'experiment {exp.name}')}")


@experiment_app.command("stop")
def experiment_stop(
    name: Annotated[str, typer.Argument(help="The experiment to stop.")],
    feedback_db: DbOpt = None,
    model: ModelOpt = None,
) -> None:
    """Stop the experiment: every replica serves its own model again."""
    from recommender.cli import _run, console
    from recommender.experiments import stop_experiment

    with _store(feedback_db, model) as store:
        console.print(_experiment_table(_run(stop_experiment, store, name)))


# ------------------------------------------------------------------ helpers
def _store(feedback_db: str | None, model: str | None) -> Any:
    from recommender.cli import _fail, _run
    from recommender.errors import InputError
    from recommender.feedback import open_store
    from recommender.refresh import feedback_db_path

    if feedback_db is None and model is None and not _env_db():
        _fail(
            InputError(
                "which feedback store? give --feedback-db, --model, or set RECBENTO_FEEDBACK_DB",
                field="--feedback-db",
            )
        )
    return _run(open_store, feedback_db or feedback_db_path(model or "model"))


def _env_db() -> bool:
    import os

    return bool(os.environ.get("RECBENTO_FEEDBACK_DB"))


def _n_items(model: str | None) -> int | None:
    if model is None:
        return None
    from recommender.bundle import load_from_store
    from recommender.cli import _run

    bundle, _ = _run(load_from_store, model)
    return len(bundle.items)


def _time(value: str | None, field: str) -> float | None:
    if value is None:
        return None
    from recommender.cli import _fail
    from recommender.errors import InputError

    try:
        return float(value)
    except ValueError:
        pass
    try:
        ts = pd.Timestamp(value)
    except ValueError:
        _fail(
            InputError(
                f"--{field}={value!r}: expected an ISO date/time or unix seconds",
                field=f"--{field}",
                value=value,
            )
        )
    return (ts if ts.tzinfo else ts.tz_localize("UTC")).timestamp()


def _table(df: pd.DataFrame, *, title: str) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for col in df.columns:
        table.add_column(str(col), justify="left" if df[col].dtype == object else "right")
    for row in df.itertuples(index=False):
        table.add_row(*[_cell(v) for v in row])
    return table


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v)


def _experiment_table(exp: Any) -> Any:
    from rich.table import Table

    state = "running" if exp.active else "stopped"
    table = Table(title=f"experiment {exp.name} ({state})")
    for col in ("arm", "model", "share"):
        table.add_column(col)
    for a in exp.arms:
        table.add_row(a.name, a.model, f"{a.share:g}")
    return table
