from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from recommender.errors import ValidationError
from recommender.schemas import normalize_ids, validate_tables


def test_good_tables_are_normalised(items, interactions):
    tables = validate_tables(items, interactions)
    inter = tables.interactions
    assert inter["timestamp"].dtype == "int64"
    # weight falls back to rating when no weight column is given
    assert inter["weight"].tolist() == inter["rating"].tolist()
    # sorted by user then time: histories read oldest first
    assert inter.groupby("user_id")["timestamp"].apply(lambda s: s.is_monotonic_increasing).all()
    assert tables.items["item_id"].dtype == "int64"


def test_every_problem_is_reported_at_once(items, interactions):
    items.loc[1, "title"] = "  "
    items.loc[2, "item_id"] = 1
    interactions = interactions.astype({"timestamp": object})
    interactions.loc[0, "item_id"] = 999
    interactions.loc[1, "timestamp"] = "yesterday"
    interactions.loc[2, "rating"] = float("inf")
    with pytest.raises(ValidationError) as info:
        validate_tables(items, interactions)
    f = info.value.failures
    got = {(t, c, str(r), ch) for t, c, r, ch in f[["table", "column", "row", "check"]].values}
    assert ("items", "title", "1", "non-empty title") in got
    assert ("items", "item_id", "0", "unique") in got and ("items", "item_id", "2", "unique") in got
    assert ("interactions", "item_id", "0", "item_id exists in items") in got
    assert ("interactions", "timestamp", "1", "unix seconds or ISO-8601") in got
    assert ("interactions", "rating", "2", "finite number") in got
    assert "nothing was written" in info.value.message


def test_missing_required_columns_are_named(items, interactions):
    with pytest.raises(ValidationError) as info:
        validate_tables(items.drop(columns=["title"]), interactions.drop(columns=["timestamp"]))
    f = info.value.failures
    assert set(zip(f["table"], f["column"], strict=True)) == {
        ("items", "title"),
        ("interactions", "timestamp"),
    }


def test_iso_timestamps_and_weights(items):
    inter = pd.DataFrame(
        {
            "user_id": ["a", "a"],
            "item_id": [1, 2],
            "timestamp": ["1970-01-02T00:00:00Z", "1970-01-01T00:01:40+00:00"],
            "weight": [2.0, None],
        }
    )
    out = validate_tables(items, inter).interactions
    assert out["timestamp"].tolist() == [100, 86400]
    assert out["weight"].tolist() == [1.0, 2.0]


def test_negative_weight_and_null_user_rejected(items):
    inter = pd.DataFrame(
        {"user_id": [1, None], "item_id": [1, 2], "timestamp": [1, 2], "weight": [-1.0, 1.0]}
    )
    with pytest.raises(ValidationError) as info:
        validate_tables(items, inter)
    checks = set(info.value.failures["check"])
    assert {"finite number >= 0", "not null"} <= checks


def test_users_table_must_have_unique_ids(items, interactions):
    users = pd.DataFrame({"user_id": [10, 10], "age": ["20-29", "30-39"]})
    with pytest.raises(ValidationError) as info:
        validate_tables(items, interactions, users)
    assert set(info.value.failures["table"]) == {"users"}


def test_string_ids_in_log_match_int_catalogue(items):
    inter = pd.DataFrame({"user_id": ["u1"], "item_id": ["3"], "timestamp": [5]})
    out = validate_tables(items, inter).interactions
    assert out["item_id"].tolist() == [3]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=-(2**40), max_value=2**40), min_size=1, max_size=20))
def test_integer_ids_stay_integers(values):
    out = normalize_ids(pd.Series([str(v) for v in values]))
    assert out.tolist() == values


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 7), st.integers(1, 10**9), st.floats(0, 5)),
        min_size=1,
        max_size=30,
    )
)
def test_any_valid_log_validates(rows):
    items = pd.DataFrame({"item_id": range(8), "title": [f"t{i}" for i in range(8)]})
    inter = pd.DataFrame(rows, columns=["item_id", "timestamp", "rating"]).assign(user_id=1)
    out = validate_tables(items, inter).interactions
    assert len(out) == len(rows)
    assert out["timestamp"].is_monotonic_increasing
