"""The side-by-side benchmark's summary: paired ratios, and floor rounds on one worker left out."""

from __future__ import annotations

import math

from benchmarks.side_by_side import paired_ratios


def _cell(r: int, system: str, rps: float, p99: float, cpu: float, busiest: float = 0.5) -> dict:
    return {
        "round": r,
        "system": system,
        "rps": rps,
        "p99_ms": p99,
        "server_cpu_ms": cpu,
        "busiest_worker": busiest,
    }


def test_each_round_is_compared_with_its_own_baseline_and_the_median_reported() -> None:
    # the machine slows down over the rounds: the ratios stay put, the raw rates do not
    rows = [
        _cell(0, "floor", 800, 20, 2.0),
        _cell(0, "recbento", 400, 40, 4.0),
        _cell(1, "recbento", 300, 60, 6.0),
        _cell(1, "floor", 500, 25, 2.5),
        _cell(2, "floor", 600, 30, 3.0),
        _cell(2, "recbento", 330, 45, 6.6),
    ]
    s = paired_ratios(rows, "floor")
    assert s["rounds"] == 3 and s["skipped"] == []
    assert [k["rps_ratio"] for k in s["per_round"]] == [0.5, 0.6, 0.55]
    assert s["rps_ratio"] == 0.55 and s["rps_ratio_range"] == [0.5, 0.6]
    assert s["p99_ratio"] == 2.0 and s["cpu_ratio"] == 2.2


def test_a_floor_round_on_one_worker_is_left_out_but_a_busy_build_baseline_is_not() -> None:
    rows = [
        _cell(0, "floor", 450, 30, 2.2, busiest=0.99),  # one core: it would flatter recbento
        _cell(0, "recbento", 380, 41, 4.5),
        _cell(1, "floor", 800, 20, 2.0, busiest=0.6),
        _cell(1, "recbento", 400, 40, 4.4),
    ]
    s = paired_ratios(rows, "floor")
    assert s["skipped"] == [0] and s["rounds"] == 1 and s["rps_ratio"] == 0.5
    # an A/B against another build compares every round: its workers are recbento's own
    ab = [{**r, "system": "baseline" if r["system"] == "floor" else r["system"]} for r in rows]
    assert paired_ratios(ab, "baseline")["rounds"] == 2


def test_no_usable_round_gives_no_ratio_rather_than_a_made_up_one() -> None:
    s = paired_ratios(
        [_cell(0, "floor", 450, 30, 2.2, busiest=1.0), _cell(0, "recbento", 380, 41, 4.5)], "floor"
    )
    assert s["rounds"] == 0 and math.isnan(s["rps_ratio"]) and s["rps_ratio_range"] == []
