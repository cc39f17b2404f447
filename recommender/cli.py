"""The ``recbento`` command line: build, recommend, batch and the tools around them.

Every command prints a readable table and exits non-zero on bad input; nothing is
written to the model store unless the whole build succeeded.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from recommender.errors import RecbentoError, ValidationError

__all__ = ["app", "main"]

log = logging.getLogger(__name__)

os.environ.setdefault("BENTOML_DO_NOT_TRACK", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

app = typer.Typer(
    help="recbento: a BERT + knowledge-graph recommender packaged for BentoML.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# Piped output (logs, CI) gets wide tables so that no problem is wrapped mid-word.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model name or name:version.")]
EngineOpt = Annotated[
    str,
    typer.Option(
        help="Where to run: 'local' (this process) or 'ray' (the cluster at RAY_ADDRESS, "
        "else a local Ray; needs pip install 'recbento[ray]')."
    ),
]
ActorsOpt = Annotated[int, typer.Option(help="Model replicas (Ray actors) with --engine ray.")]
GpusOpt = Annotated[
    float, typer.Option(help="GPUs per Ray actor (0: CPU actors) with --engine ray.")
]


def _fail(exc: RecbentoError) -> None:
    """Print an error (and its table of problems) to stderr and exit 1."""
    if isinstance(exc, ValidationError) and exc.failures is not None:
        table = Table(title=exc.message, title_style="bold red")
        for col in exc.failures.columns:
            table.add_column(str(col))
        for row in exc.failures.itertuples(index=False):
            table.add_row(*["" if v is None else str(v) for v in row])
        err_console.print(table)
    else:
        err_console.print(f"[bold red]error:[/] {escape(exc.message)}")
    raise typer.Exit(code=1)


def _run(fn: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except RecbentoError as exc:
        _fail(exc)


@app.callback()
def _setup(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if os.environ.get("RECBENTO_MODEL_STORE"):  # the store shared with a deployment's pods
        from recommender.service_core import share_model_store

        share_model_store()


@app.command()
def build(
    items: Annotated[Path, typer.Option(help="Items table (CSV or Parquet).")],
    interactions: Annotated[Path, typer.Option(help="Interactions table (CSV or Parquet).")],
    name: Annotated[str, typer.Option(help="Model name in the BentoML store.")],
    users: Annotated[Path | None, typer.Option(help="Optional users table.")] = None,
    encoder: Annotated[
        str | None, typer.Option(help="Encoder checkpoint path or name (default: MiniLM).")
    ] = None,
    train: Annotated[
        bool, typer.Option("--train", help="Also train the sequential user tower.")
    ] = False,
    engine: EngineOpt = "local",
    actors: ActorsOpt = 2,
    gpus_per_actor: GpusOpt = 0.0,
) -> None:
    """Validate the tables, encode the catalogue and save a new model version."""
    from recommender.build import build_and_save

    t0 = time.perf_counter()
    report = _run(
        build_and_save,
        items,
        interactions,
        name=name,
        users=users,
        encoder=encoder,
        train=train,
        engine=engine,
        actors=actors,
        gpus_per_actor=gpus_per_actor,
    )
    _print_report(report, t0)


@app.command("train")
def train_cmd(
    model: ModelOpt,
    name: Annotated[
        str | None, typer.Option(help="Save under this name (default: the model's own).")
    ] = None,
) -> None:
    """Train the user tower on a built model's log; saves a new version (no re-encoding)."""
    from recommender.build import retrain

    t0 = time.perf_counter()
    report = _run(retrain, model, name=name)
    _print_report(report, t0)


def _print_report(report: Any, t0: float) -> None:
    table = Table(title=f"built {report.tag}")
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("items", f"{report.n_items:,}")
    table.add_row("users", f"{report.n_users:,}")
    table.add_row("interactions", f"{report.n_interactions:,}")
    for step, secs in report.seconds.items():
        table.add_row(f"{step} (s)", f"{secs:.1f}")
    table.add_row("total (s)", f"{time.perf_counter() - t0:.1f}")
    tr = getattr(report, "training", None) or {}
    if tr:
        table.add_row("training epochs (best)", f"{tr['epochs']} ({tr['best_epoch']})")
        stopped = tr["stopped_by"]
        if stopped == "time_cap":
            stopped = f"time cap ({tr['max_seconds']:.0f} s), best epoch kept"
        table.add_row("training stopped by", stopped.replace("_", " "))
    console.print(table)
    console.print(report.tag)


def _load(model: str) -> Any:
    from recommender.service_core import load

    return _run(load, model)


@app.command()
def recommend(
    model: ModelOpt,
    user_id: Annotated[str | None, typer.Option("--user-id", help="A known user.")] = None,
    query: Annotated[str | None, typer.Option(help="Free-text request.")] = None,
    history: Annotated[
        str | None, typer.Option(help="Comma-separated item ids the user liked.")
    ] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="How many items.")] = 10,
    explain: Annotated[bool, typer.Option(help="Add reasons to every item.")] = False,
) -> None:
    """Print the top-k items for a user, a history or a query."""
    from recommender.serving import Request

    rec = _load(model)
    hist = [h.strip() for h in history.split(",") if h.strip()] if history else None
    req = Request(user_id=user_id, history=hist, query=query, k=k, explain=explain)
    result = _run(rec.recommend, req)
    title = f"top {k} for user {user_id}" if user_id is not None else f"top {k}"
    if result.cold_start:
        title += " (cold start: popular items)"
    table = Table(title=title)
    for col in ("rank", "item_id", "title", "score"):
        table.add_column(col, justify="right" if col in ("rank", "score") else "left")
    if explain:
        table.add_column("why")
    for rank, item in enumerate(result.items, start=1):
        row = [str(rank), str(item.item_id), item.title, f"{item.score:.4f}"]
        if explain:
            row.append("; ".join(r.get("text", "") for r in item.reasons))
        table.add_row(*row)
    console.print(table)


@app.command()
def batch(
    input: Annotated[Path, typer.Option("--input", help="Users table: user_id [, query].")],
    output: Annotated[Path, typer.Option(help="Where to write recommendations (.csv/.parquet).")],
    model: Annotated[str, typer.Option("--model", "-m")] = "recbento-demo",
    k: Annotated[int, typer.Option("-k", "--k")] = 10,
    url: Annotated[
        str | None, typer.Option(help="Call a running service instead of in-process.")
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Users per call.")] = 64,
    concurrency: Annotated[int, typer.Option(help="Parallel calls with --url.")] = 4,
    retries: Annotated[int, typer.Option(help="Retries per failed call with --url.")] = 5,
    token: Annotated[
        str | None, typer.Option(envvar="RECBENTO_API_TOKEN", help="Bearer token for --url.")
    ] = None,
    engine: EngineOpt = "local",
    actors: ActorsOpt = 2,
    gpus_per_actor: GpusOpt = 0.0,
    model_uri: Annotated[
        str | None,
        typer.Option(
            help="With --engine ray: shared folder or URL (s3://...) to export the model to; "
            "workers import it from there. Omit when workers share this model store."
        ),
    ] = None,
) -> None:
    """Recommend for every user of a table; resumable (finished users are skipped)."""
    from recommender.batch import run_batch

    stats = _run(
        run_batch,
        input,
        output,
        model=model,
        k=k,
        url=url,
        batch_size=batch_size,
        concurrency=concurrency,
        retries=retries,
        token=token,
        engine=engine,
        actors=actors,
        gpus_per_actor=gpus_per_actor,
        model_uri=model_uri,
    )
    table = Table(title=f"wrote {output}")
    table.add_column("what")
    table.add_column("value", justify="right")
    for key, value in stats.items():
        table.add_row(key, f"{value:,.1f}" if isinstance(value, float) else f"{value:,}")
    console.print(table)


@app.command()
def groups(
    model: ModelOpt,
    png: Annotated[
        Path | None, typer.Option(help="Where to write the plot (default: <model>-groups.png).")
    ] = None,
) -> None:
    """Print the user groups' portraits and write a PNG of them."""
    from recommender.group_portraits import plot_groups

    rec = _load(model)
    g = rec.groups
    if g is None:
        _fail(RecbentoError(f"model={model!r} has no user groups (built with too few users?)"))
    table = Table(title=f"{g.n_groups_} user groups (silhouette {g.silhouette_:.3f})")
    for col in ("group", "users", "share", "top entities (lift)", "top items"):
        table.add_column(col, justify="right" if col in ("group", "users", "share") else "left")
    titles = dict(zip(rec.catalogue.ids, rec.catalogue.titles, strict=True))
    for p in g.portraits_:
        ents = ", ".join(f"{e['entity']} ({e['lift']:.2f})" for e in p.top_entities[:3])
        items = "; ".join(str(titles.get(i["item"], i["item"])) for i in p.top_items[:3])
        table.add_row(str(p.group), f"{p.size:,}", f"{p.share:.1%}", ents, items)
    console.print(table)
    if rec.bundle.user_vectors is not None and len(g.labels_) == len(rec.bundle.user_vectors):
        path = png or Path(f"{model.split(':')[0]}-groups.png")
        plot_groups(
            rec.bundle.user_vectors,
            g.labels_,
            g.portraits_,
            path,
            title=f"User groups of {rec.tag}",
        )
        console.print(f"wrote {path}")


def _register() -> None:
    from recommender.cli_kg import explain, kg_app

    app.add_typer(kg_app, name="kg")
    app.command()(explain)
    ops = __import__("recommender.cli_ops", fromlist=["refresh"])
    app.command()(ops.refresh)
    app.command("copy-feedback")(ops.copy_feedback)
    online = __import__("recommender.cli_online", fromlist=["report"])
    app.command()(online.report)
    app.add_typer(online.experiment_app, name="experiment")


_register()


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except RecbentoError as exc:  # pragma: no cover - commands catch their own
        err_console.print(f"[bold red]error:[/] {escape(exc.message)}")
        sys.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
