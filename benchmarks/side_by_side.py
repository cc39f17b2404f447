"""Two servers at once, driven in turn: a throughput ratio that the machine's drift leaves alone.

    python -m benchmarks.side_by_side                          # recbento against the floor
    python -m benchmarks.side_by_side --baseline ../old-checkout   # against another build

A benchmark run measures its cells minutes apart, and on a shared machine the speed
moves by a third within the hour, which can make a change look better or worse than it
is. Here both servers run for the whole measurement and are driven one after the other,
``recommend`` at one concurrency for a few seconds each, the order swapped every round.
Each round gives a ratio of two cells measured seconds apart; the report is their
median and range. The baseline is the floor (``benchmarks/floor_service.py``, a
BentoML service that does no work) or recbento served from another checkout (an
earlier commit in a ``git worktree``), for an A/B of a change to the request path.

A floor round whose busiest worker did more than :data:`~benchmarks.serving.UNBALANCED`
of the work measured one core, not the floor: it is left out of the ratios and the
floor is started again for the next round. Writes ``side_by_side.{md,json}`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.server_process import (
    free_port,
    start_floor,
    start_server,
    stop_server,
    trained_model,
)
from benchmarks.serving import UNBALANCED, load_test

log = logging.getLogger(__name__)

__all__ = ["paired_ratios", "main"]

Starter = Callable[[int], subprocess.Popen]


def paired_ratios(rows: list[dict[str, Any]], baseline: str) -> dict[str, Any]:
    """Per-round ratios of recbento's cell to the baseline's, and their medians.

    ``rows`` hold one cell per server per round (``round``, ``system``, ``rps``,
    ``p99_ms``, ``server_cpu_ms``, ``busiest_worker``). A round whose floor ran on one
    worker is left out (``skipped``).

    >>> rows = [
    ...     {"round": 0, "system": "floor", "rps": 800, "p99_ms": 20, "server_cpu_ms": 2.0,
    ...      "busiest_worker": 0.55},
    ...     {"round": 0, "system": "recbento", "rps": 400, "p99_ms": 40, "server_cpu_ms": 4.4,
    ...      "busiest_worker": 0.5},
    ...     {"round": 1, "system": "floor", "rps": 450, "p99_ms": 30, "server_cpu_ms": 2.2,
    ...      "busiest_worker": 0.99},
    ...     {"round": 1, "system": "recbento", "rps": 380, "p99_ms": 41, "server_cpu_ms": 4.5,
    ...      "busiest_worker": 0.5},
    ... ]
    >>> s = paired_ratios(rows, "floor")
    >>> s["rps_ratio"], s["p99_ratio"], s["cpu_ratio"], s["rounds"], s["skipped"]
    (0.5, 2.0, 2.2, 1, [1])
    """
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        by_round.setdefault(row["round"], {})[row["system"]] = row
    kept, skipped = [], []
    for r, cells in sorted(by_round.items()):
        base, ours = cells.get(baseline), cells.get("recbento")
        if base is None or ours is None:
            continue
        if baseline == "floor" and base.get("busiest_worker", 0.0) > UNBALANCED:
            skipped.append(r)
            continue
        kept.append(
            {
                "round": r,
                "rps_ratio": ours["rps"] / base["rps"],
                "p99_ratio": ours["p99_ms"] / base["p99_ms"],
                "cpu_ratio": ours["server_cpu_ms"] / base["server_cpu_ms"],
            }
        )
    out: dict[str, Any] = {"baseline": baseline, "rounds": len(kept), "skipped": skipped}
    for key in ("rps_ratio", "p99_ratio", "cpu_ratio"):
        values = [k[key] for k in kept]
        out[key] = round(statistics.median(values), 3) if values else float("nan")
        out[key + "_range"] = [round(min(values), 3), round(max(values), 3)] if values else []
    out["per_round"] = kept
    return out


def _run_rounds(
    starters: dict[str, Starter], args: argparse.Namespace, n_users: int
) -> list[dict[str, Any]]:
    """Drive each server in turn for ``args.rounds`` rounds; one row per server per round."""
    procs = {name: (start(port := free_port()), port) for name, start in starters.items()}
    names, rows = list(starters), []
    try:
        for r in range(args.rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                proc, port = procs[name]
                (row,), _ = load_test(
                    f"http://127.0.0.1:{port}",
                    {"recommend": [args.concurrency]},
                    args.seconds,
                    n_users,
                    1,
                    system=name,
                    proc=proc,
                    client=args.client,
                )
                row["round"] = r
                rows.append(row)
                log.info(
                    "round %d %s: %.0f requests/s, p99 %.1f ms, %.2f ms CPU, busiest worker %.2f",
                    r,
                    name,
                    row["rps"],
                    row["p99_ms"],
                    row["server_cpu_ms"],
                    row["busiest_worker"],
                )
                if name == "floor" and row["busiest_worker"] > UNBALANCED:
                    stop_server(proc)  # a floor that did it once tends to do it again
                    procs[name] = (starters[name](port := free_port()), port)
    finally:
        for proc, _ in procs.values():
            stop_server(proc)
    return rows


def report(summary: dict[str, Any], args: argparse.Namespace) -> str:
    """The summary as Markdown."""
    lines = [
        f"## recbento against {summary['baseline']}, side by side "
        f"(`recommend`, concurrency {args.concurrency}, {args.seconds:g} s per cell, "
        f"{args.rounds} rounds)",
        "",
        "| round | rps ratio | p99 ratio | CPU ratio |",
        "|---|---|---|---|",
    ]
    for k in summary["per_round"]:
        lines.append(
            f"| {k['round']} | {k['rps_ratio']:.2f} | {k['p99_ratio']:.2f} | {k['cpu_ratio']:.2f} |"
        )
    lines += [
        "",
        f"Medians over {summary['rounds']} rounds: throughput {summary['rps_ratio']:.2f} "
        f"(range {summary['rps_ratio_range']}), p99 {summary['p99_ratio']:.2f}, server CPU "
        f"per request {summary['cpu_ratio']:.2f} times the baseline's.",
    ]
    if summary["skipped"]:
        lines.append(
            f"Left out: rounds {summary['skipped']}, whose floor ran on one worker "
            f"(busiest worker above {UNBALANCED})."
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="recbento-demo")
    ap.add_argument(
        "--baseline",
        default="floor",
        help="'floor', or the path of another recbento checkout to serve as the baseline",
    )
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=12.0, help="per server and round")
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--users", type=int, default=610, help="user ids drawn from 1..users")
    ap.add_argument("--client", choices=["aiohttp", "httpx"], default="aiohttp")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    tag = trained_model(args.model)
    stores = Path(tempfile.mkdtemp(prefix="recbento-side-by-side-"))

    def recbento(cwd: Path | None, name: str) -> Starter:
        env = {"RECBENTO_FEEDBACK_DB": str(stores / f"{name}.db")}  # a fresh store each
        return lambda port: start_server(tag, port, env=env, cwd=cwd)

    baseline = "floor" if args.baseline == "floor" else "baseline"
    starters: dict[str, Starter] = {
        baseline: (
            start_floor
            if baseline == "floor"
            else recbento(Path(args.baseline).resolve(), "baseline")
        ),
        "recbento": recbento(None, "recbento"),
    }
    rows = _run_rounds(starters, args, args.users)
    summary = paired_ratios(rows, baseline)
    text = report(summary, args)
    print(text)
    (args.out / "side_by_side.md").write_text(text)
    (args.out / "side_by_side.json").write_text(
        json.dumps(
            {"model": tag, "baseline_path": args.baseline, "rows": rows, **summary}, indent=1
        )
    )


if __name__ == "__main__":
    main()
