"""One range check for every numeric setting, so each bad value is reported the same way.

:func:`check_range` accepts a real number (never a bool) inside a range and raises an
:class:`~recommender.errors.InputError` naming the field, the value and the range
otherwise. A side without a bound is unbounded; infinity and NaN are always refused.

Examples
--------
>>> check_range(0.3, field="diversity", low=0, high=1)
0.3
>>> check_range(-1, field="event_weights.like", low=0)
Traceback (most recent call last):
...
recommender.errors.InputError: event_weights.like=-1: expected a finite number >= 0
>>> check_range(1.0, field="calibration_alpha", low=0, high=1, low_open=True, high_open=True)
Traceback (most recent call last):
...
recommender.errors.InputError: calibration_alpha=1.0: expected a number in (0, 1)
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Callable, Collection, Mapping
from typing import Any, TypeVar

from recommender.errors import InputError

__all__ = ["check_fields", "check_range", "describe_range", "from_mapping"]

T = TypeVar("T")


def describe_range(
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    whole: bool = False,
) -> str:
    """What :func:`check_range` accepts, in words (``"a number in [0, 1]"``).

    >>> describe_range(1, whole=True)
    'a whole number >= 1'
    """
    kind = "whole number" if whole else "number"
    if low is not None and high is not None:
        lb, rb = "(" if low_open else "[", ")" if high_open else "]"
        return f"a {kind} in {lb}{_num(low)}, {_num(high)}{rb}"
    finite = "" if whole else "finite "
    if low is not None:
        return f"a {finite}{kind} {'>' if low_open else '>='} {_num(low)}"
    if high is not None:
        return f"a {finite}{kind} {'<' if high_open else '<='} {_num(high)}"
    return f"a {finite}{kind}"


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def check_range(
    value: object,
    *,
    field: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    whole: bool = False,
) -> float | int:
    """``value`` as a ``float`` (``int`` when ``whole``) if it lies in the range.

    Parameters
    ----------
    value : object
        What was given.
    field : str
        Its name as the user wrote it (a config key, an environment variable).
    low, high : float, optional
        Bounds; a missing one leaves that side unbounded. The value must be finite.
    low_open, high_open : bool
        Whether the bound itself is excluded.
    whole : bool
        Accept whole numbers only (``int``, not ``3.0``).

    Raises
    ------
    InputError
        ``value`` is not a number, not finite, or out of the range.
    """
    number = numbers.Integral if whole else numbers.Real
    ok = isinstance(value, number) and not isinstance(value, bool)
    if ok:
        v = float(value)  # type: ignore[arg-type]
        ok = (
            math.isfinite(v)
            and (low is None or (v > low if low_open else v >= low))
            and (high is None or (v < high if high_open else v <= high))
        )
    if not ok:
        expected = describe_range(low, high, low_open=low_open, high_open=high_open, whole=whole)
        raise InputError(f"{field}={value!r}: expected {expected}", field=field, value=value)
    return int(value) if whole else float(value)  # type: ignore[arg-type]


def check_fields(
    obj: Any,
    ranges: Mapping[str, Mapping[str, Any]],
    *,
    label: Callable[[str], str] = str,
    skip: Collection[str] = (),
) -> None:
    """:func:`check_range` on every field of the dataclass ``obj``; store what it returns.

    ``ranges`` maps each field name to the keyword arguments of :func:`check_range`;
    ``label`` turns a field name into the name a user knows it by (``field=``); ``skip``
    names fields the caller checks otherwise (words rather than numbers). Works on
    frozen dataclasses (call it from ``__post_init__``).
    """
    for f in dataclasses.fields(obj):
        if f.name in skip:
            continue
        value = check_range(getattr(obj, f.name), field=label(f.name), **ranges[f.name])
        object.__setattr__(obj, f.name, value)


def from_mapping(cls: type[T], config: Mapping[str, Any] | None, section: str) -> T:
    """``cls(**config)``, rejecting keys that are not fields of ``cls``.

    >>> from recommender.config import EncoderConfig
    >>> from_mapping(EncoderConfig, {"name": "bert-base-uncased"}, "encoder").name
    'bert-base-uncased'
    """
    config = dict(config or {})
    known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    unknown = sorted(set(config) - set(known))
    if unknown:
        raise InputError(
            f"{section}: unknown key(s) {unknown}; expected some of {known}",
            field=f"{section}.{unknown[0]}",
            value=unknown[0],
        )
    return cls(**config)
