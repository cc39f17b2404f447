"""``recbento kg ...`` and ``recbento explain``: inspect and export the knowledge graph."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from recommender.errors import NotFoundError, RecbentoError

__all__ = ["kg_app", "explain"]

kg_app = typer.Typer(help="Inspect and export a model's knowledge graph.", no_args_is_help=True)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model name or name:version.")]


def _graph(model: str) -> tuple[Any, Any]:
    from recommender.cli import _load

    rec = _load(model)
    if rec.graph is None:
        from recommender.cli import _fail

        _fail(RecbentoError(f"model={model!r} has no knowledge graph"))
    return rec, rec.graph


@kg_app.command("stats")
def stats(
    model: ModelOpt,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Nodes and edges by type, degree distribution, most supported entities."""
    from knowledge_graph import graph_stats, stats_table
    from recommender.cli import console

    rec, kg = _graph(model)
    s = graph_stats(kg.G)
    if as_json:
        typer.echo(json.dumps(s, indent=2, default=str))
    else:
        console.print(stats_table(s, title=f"knowledge graph of {rec.tag}"))


@kg_app.command("export")
def export(
    model: ModelOpt,
    out: Annotated[Path, typer.Option(help="File to write.")],
    format: Annotated[str, typer.Option(help="json (node-link) or graphml.")] = "json",
) -> None:
    """Write the graph as node-link JSON or GraphML."""
    from knowledge_graph import export_graphml, save_json
    from recommender.cli import _fail, console

    fmt: Literal["json", "graphml"] | str = format.lower()
    if fmt not in ("json", "graphml"):
        _fail(RecbentoError(f"format={format!r}: expected 'json' or 'graphml'"))
    _, kg = _graph(model)
    (save_json if fmt == "json" else export_graphml)(kg.G, out)
    console.print(
        f"wrote {out} ({kg.G.number_of_nodes():,} nodes, {kg.G.number_of_edges():,} edges)"
    )


@kg_app.command("ego")
def ego(
    model: ModelOpt,
    out: Annotated[Path, typer.Option(help="PNG to write.")],
    item_id: Annotated[str | None, typer.Option("--item-id", help="Centre on an item.")] = None,
    user_id: Annotated[str | None, typer.Option("--user-id", help="Centre on a user.")] = None,
    radius: Annotated[int, typer.Option(help="Hops around the centre.")] = 1,
) -> None:
    """A PNG of the graph around an item, or around a user's recent history."""
    from knowledge_graph import item_node, plot_ego, user_node
    from recommender.cli import _fail, console

    if (item_id is None) == (user_id is None):
        _fail(RecbentoError("give exactly one of --item-id or --user-id"))
    rec, kg = _graph(model)
    try:
        if item_id is not None:
            row = rec.catalogue.row(item_id)
            plot_ego(kg.G, item_node(rec.catalogue.ids[row]), out, radius=radius)
        else:
            h = rec.histories.get(rec.catalogue.user_key(user_id)).last(20)
            if not len(h):
                raise NotFoundError(f"user_id={user_id!r} has no history", field="user_id")
            nodes = [item_node(rec.catalogue.ids[i]) for i in h.items]
            plot_ego(kg.G, user_node(user_id), out, radius=radius, history=nodes)
    except RecbentoError as exc:
        _fail(exc)
    console.print(f"wrote {out}")


def explain(
    model: ModelOpt,
    user_id: Annotated[str, typer.Option("--user-id", help="Whose history explains.")],
    item_id: Annotated[str, typer.Option("--item-id", help="The item to explain.")],
) -> None:
    """Why ``item-id`` suits ``user-id``: the strongest paths from the user's history."""
    from recommender.cli import _fail, console
    from recommender.serving import Request
    from recommender.serving.stages import user_states

    rec, kg = _graph(model)
    try:
        row = rec.catalogue.row(item_id)
        state = user_states(rec, [Request(user_id=user_id)])[0]
        if not len(state.history):
            raise NotFoundError(
                f"user_id={user_id!r} has no history to explain from", field="user_id"
            )
        reasons = kg.explain(row, state.history.items, history_weights=state.weights)
    except RecbentoError as exc:
        _fail(exc)
    if not reasons:
        console.print(f"{rec.catalogue.titles[row]}: no path links it to user {user_id}'s history")
        raise typer.Exit(code=0)
    console.print(f"[bold]{rec.catalogue.titles[row]}[/] for user {user_id}:")
    for r in reasons:
        console.print(f"  - {r.text}  (score {r.score:.3f})")
