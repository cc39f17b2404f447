"""A/B experiments: several model versions served side by side, users split by a hash.

An experiment names two or more arms, each a model version (``name:version`` in the
model store) with a share of users. A user's arm is fixed by their id alone:
``sha256(experiment name, user id)`` read as a number in ``[0, 1)`` falls in one arm's
slice of the cumulative shares, so every worker and replica puts a user in the same
arm, without any shared state but the experiment's definition. Requests without a
``user_id`` go to the first arm (the control).

The definition lives in the feedback store (table ``feedback_experiments``), so every
replica serving from that store sees it: ``recbento experiment start|show|stop``
writes it, the service reads the active one (re-read every few seconds). At most one
experiment is active at a time; names are never reused, so the impressions of an
experiment stay attributable to it.

Examples
--------
>>> exp = Experiment("ranker", (Arm("control", "movies:v1", 0.5), Arm("new", "movies:v2", 0.5)))
>>> exp.assign(42).name in ("control", "new"), exp.assign(42) == exp.assign(42)
(True, True)
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from recommender.errors import InputError, NotFoundError
from recommender.feedback_rows import encode_id

__all__ = [
    "Arm",
    "Experiment",
    "active_experiment",
    "bucket",
    "get_experiment",
    "list_experiments",
    "parse_arm",
    "start_experiment",
    "stop_experiment",
]

log = logging.getLogger(__name__)

TABLE = "feedback_experiments"
SQLITE_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {TABLE} (
    name       TEXT PRIMARY KEY,
    arms       TEXT NOT NULL,  -- JSON [{{"name", "model", "share"}}, ...]
    started_at REAL NOT NULL,
    stopped_at REAL
);
"""
POSTGRES_SCHEMA = (
    f"""
    CREATE TABLE IF NOT EXISTS {TABLE} (
        name       TEXT PRIMARY KEY,
        arms       TEXT NOT NULL,
        started_at DOUBLE PRECISION NOT NULL,
        stopped_at DOUBLE PRECISION
    )""",
)


@dataclass(frozen=True)
class Arm:
    """One side of an experiment: a model version and its share of users."""

    name: str
    model: str
    share: float


@dataclass(frozen=True)
class Experiment:
    """An experiment's definition; :meth:`assign` picks a user's arm."""

    name: str
    arms: tuple[Arm, ...]
    started_at: float | None = None
    stopped_at: float | None = None
    _bounds: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise InputError(
                f"experiment name={self.name!r}: expected a non-empty string",
                field="name",
                value=self.name,
            )
        arms = tuple(self.arms)
        if len(arms) < 2:
            raise InputError(
                f"experiment {self.name!r} has {len(arms)} arm(s); expected at least 2",
                field="arms",
                value=len(arms),
            )
        names = [a.name for a in arms]
        if len(set(names)) != len(names):
            raise InputError(
                f"experiment {self.name!r}: arm names {names} repeat; expected distinct names",
                field="arms",
                value=names,
            )
        for a in arms:
            if not (isinstance(a.share, (int, float)) and 0 < a.share <= 1):
                raise InputError(
                    f"arm {a.name!r} share={a.share!r}: expected a number in (0, 1]",
                    field=f"arms.{a.name}.share",
                    value=a.share,
                )
        total = sum(a.share for a in arms)
        if not math.isclose(total, 1.0, abs_tol=1e-6):
            raise InputError(
                f"experiment {self.name!r}: arm shares add up to {total:g}; expected 1",
                field="arms",
                value=total,
            )
        bounds, acc = [], 0.0
        for a in arms:
            acc += a.share
            bounds.append(acc)
        object.__setattr__(self, "arms", arms)
        object.__setattr__(self, "_bounds", tuple(bounds))

    @property
    def active(self) -> bool:
        return self.stopped_at is None

    def assign(self, user_id: Any) -> Arm:
        """The arm of ``user_id`` (typed as the model's log); the first arm for None."""
        if user_id is None:
            return self.arms[0]
        u = bucket(self.name, user_id)
        for arm, bound in zip(self.arms, self._bounds, strict=True):
            if u < bound:
                return arm
        return self.arms[-1]  # u within rounding of 1

    def arm(self, name: str) -> Arm:
        for a in self.arms:
            if a.name == name:
                return a
        raise NotFoundError(
            f"arm={name!r}: experiment {self.name!r} has arms {[a.name for a in self.arms]}",
            field="arm",
            value=name,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arms": [{"name": a.name, "model": a.model, "share": a.share} for a in self.arms],
            "started_at": self.started_at,
            "stopped_at": self.stopped_at,
            "active": self.active,
        }


def bucket(experiment: str, user_id: Any) -> float:
    """``sha256(experiment, user id)`` as a number in ``[0, 1)``: the user's fixed draw.

    >>> 0 <= bucket("ranker", 42) < 1, bucket("ranker", 42) == bucket("ranker", "42")
    (True, False)
    """
    digest = hashlib.sha256(f"{experiment}\x00{encode_id(user_id)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def parse_arm(spec: str) -> Arm:
    """``NAME=MODEL@SHARE`` (``control=movies:abc123@0.5``) as an :class:`Arm`."""
    name, eq, rest = spec.partition("=")
    model, at, share = rest.rpartition("@")
    try:
        value = float(share)
    except ValueError:
        value = math.nan
    if not (eq and at and name.strip() and model.strip()) or not math.isfinite(value):
        raise InputError(
            f"arm {spec!r}: expected NAME=MODEL@SHARE, e.g. control=movies:abc123@0.5",
            field="arm",
            value=spec,
        )
    return Arm(name.strip(), model.strip(), value)


def start_experiment(store: Any, experiment: Experiment, *, at: float | None = None) -> Experiment:
    """Store ``experiment`` as the active one; refuse while another is active.

    ``at`` is its start in unix seconds (default now; a replay passes simulated time):
    only lists served from then on count in its results.
    """
    current = active_experiment(store)
    if current is not None:
        raise InputError(
            f"experiment {current.name!r} is still running: stop it first "
            f"(recbento experiment stop {current.name})",
            field="name",
            value=current.name,
        )
    if any(e.name == experiment.name for e in list_experiments(store)):
        raise InputError(
            f"experiment name {experiment.name!r} was used before; names are never reused "
            "so that its impressions stay attributable",
            field="name",
            value=experiment.name,
        )
    started = Experiment(
        experiment.name, experiment.arms, started_at=time.time() if at is None else float(at)
    )
    arms = json.dumps(started.to_dict()["arms"])
    p = store._param
    store._write(
        f"INSERT INTO {TABLE} (name, arms, started_at) VALUES ({p}, {p}, {p})",
        [(started.name, arms, started.started_at)],
    )
    log.info("experiment %s started: %s", started.name, arms)
    return started


def stop_experiment(store: Any, name: str) -> Experiment:
    """Mark experiment ``name`` stopped (its arms stop being served); return it."""
    exp = get_experiment(store, name)
    if exp.active:
        p = store._param
        store._write(
            f"UPDATE {TABLE} SET stopped_at = {p} WHERE name = {p} AND stopped_at IS NULL",
            [(time.time(), name)],
        )
        exp = get_experiment(store, name)
        log.info("experiment %s stopped", name)
    return exp


def list_experiments(store: Any) -> list[Experiment]:
    """Every experiment in the store, oldest first."""
    rows = store._query(
        f"SELECT name, arms, started_at, stopped_at FROM {TABLE} ORDER BY started_at", []
    )
    return [_experiment(row) for row in rows]


def get_experiment(store: Any, name: str) -> Experiment:
    p = store._param
    rows = store._query(
        f"SELECT name, arms, started_at, stopped_at FROM {TABLE} WHERE name = {p}", [name]
    )
    if not rows:
        raise NotFoundError(f"experiment {name!r} not found", field="name", value=name)
    return _experiment(rows[0])


def active_experiment(store: Any) -> Experiment | None:
    """The running experiment, or None."""
    rows = store._query(
        f"SELECT name, arms, started_at, stopped_at FROM {TABLE} WHERE stopped_at IS NULL "
        "ORDER BY started_at DESC LIMIT 1",
        [],
    )
    return _experiment(rows[0]) if rows else None


def _experiment(row: Sequence[Any]) -> Experiment:
    name, arms, started, stopped = row
    parsed = tuple(Arm(a["name"], a["model"], float(a["share"])) for a in json.loads(arms))
    return Experiment(
        name,
        parsed,
        started_at=float(started),
        stopped_at=None if stopped is None else float(stopped),
    )
