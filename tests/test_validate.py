"""The shared range check: what it accepts, and that a refusal names field, value and range."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from recommender.config import EventWeights
from recommender.errors import InputError
from recommender.validate import check_fields, check_range


def test_values_in_range_come_back_as_numbers() -> None:
    assert check_range(0, field="w", low=0) == 0.0
    assert isinstance(check_range(1, field="w", low=0), float)
    assert check_range(np.float32(0.5), field="w", low=0, high=1) == 0.5
    assert check_range(1, field="w", low=0, high=1) == 1.0  # closed bounds are inside
    n = check_range(np.int64(4), field="n", low=1, whole=True)
    assert n == 4 and type(n) is int


@pytest.mark.parametrize(
    ("value", "kwargs", "expected"),
    [
        (-1, {"low": 0}, "a finite number >= 0"),
        (math.inf, {"low": 0}, "a finite number >= 0"),
        (math.nan, {"low": 0, "high": 1}, "a number in [0, 1]"),
        (0, {"low": 0, "low_open": True}, "a finite number > 0"),
        (1.0, {"low": 0, "high": 1, "low_open": True, "high_open": True}, "a number in (0, 1)"),
        (1.5, {"low": 0, "high": 1}, "a number in [0, 1]"),
        (True, {"low": 0}, "a finite number >= 0"),
        ("0.3", {"low": 0}, "a finite number >= 0"),
        (0, {"low": 1, "whole": True}, "a whole number >= 1"),
        (2.0, {"low": 1, "whole": True}, "a whole number >= 1"),
        (2_000_000, {"low": 0, "high": 1_048_576}, "a number in [0, 1048576]"),
    ],
)
def test_a_refusal_names_field_value_and_range(value, kwargs, expected) -> None:
    with pytest.raises(InputError) as err:
        check_range(value, field="section.knob", **kwargs)
    assert str(err.value) == f"section.knob={value!r}: expected {expected}"
    assert err.value.field == "section.knob"


def test_event_weights_use_it() -> None:
    assert EventWeights(like=3).like == 3.0
    with pytest.raises(InputError, match=r"event_weights.purchase=nan: expected a finite number"):
        EventWeights(purchase=math.nan)


@dataclasses.dataclass(frozen=True)
class _Limits:
    share: float = 0.5
    workers: int = 2

    def __post_init__(self) -> None:
        ranges = {"share": {"low": 0, "high": 1}, "workers": {"low": 1, "whole": True}}
        check_fields(self, ranges, label="limits.{}".format)


def test_check_fields_checks_and_normalises_every_field_of_a_frozen_dataclass() -> None:
    limits = _Limits(share=1, workers=np.int32(3))
    assert (limits.share, limits.workers) == (1.0, 3)
    assert type(limits.share) is float and type(limits.workers) is int
    with pytest.raises(InputError, match=r"^limits.workers=0: expected a whole number >= 1$"):
        _Limits(workers=0)
    with pytest.raises(InputError, match=r"^limits.share=2: expected a number in \[0, 1\]$"):
        _Limits(share=2)
