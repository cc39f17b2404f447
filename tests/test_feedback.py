"""Feedback store: round trip, id types, validation, threads, and survival of kill -9.

Every contract test runs against both backends: embedded SQLite and a real PostgreSQL
server (``pg_url``, started once per session by ``tests/conftest.py``).
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recommender.errors import InputError, ValidationError
from recommender.feedback import (
    EVENT_COLUMNS,
    EventStore,
    FeedbackStore,
    fold_events,
    open_store,
    to_history,
)

EVENTS = [
    {"user_id": 1, "item_id": 10, "timestamp": 300, "rating": 4.0},
    {"user_id": 1, "item_id": 11, "timestamp": 100, "weight": 2.0},
    {"user_id": 2, "item_id": 10, "timestamp": 200},
]


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request, tmp_path: Path) -> str:
    """Where a fresh store lives: a SQLite file, or a PostgreSQL schema of its own."""
    if request.param == "sqlite":
        return str(tmp_path / "fb" / "feedback.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(target: str):  # noqa: ANN201
    s = open_store(target)
    yield s
    s.close()


def test_open_store_picks_the_backend(store: EventStore, target: str) -> None:
    pg = target.startswith("postgresql://")
    assert type(store).__name__ == ("PostgresFeedbackStore" if pg else "FeedbackStore")
    if pg:  # the short scheme is the same database
        store.append(EVENTS[:1])
        with open_store(target.replace("postgresql://", "postgres://", 1)) as other:
            assert other.count() == 1


def test_open_store_rejects_other_urls() -> None:
    with pytest.raises(InputError) as err:
        open_store("mysql://db/feedback")
    assert err.value.field == "RECBENTO_FEEDBACK_DB" and "postgresql://" in err.value.message


def test_unreachable_database_is_a_clear_error() -> None:
    from recommender.errors import StorageError
    from tests.procs import free_port

    url = f"postgresql://recbento:s3cret@127.0.0.1:{free_port()}/recbento"
    with pytest.raises(StorageError) as err:
        open_store(url, timeout=1)
    assert err.value.status_code == 503 and "cannot be reached" in err.value.message
    assert "s3cret" not in err.value.message  # the password never reaches logs


def test_round_trip(store: EventStore) -> None:
    assert store.append(EVENTS) == 3
    assert store.count() == 3
    df = store.all_events()
    assert list(df.columns) == list(EVENT_COLUMNS)
    assert df["item_id"].tolist() == [10, 11, 10]  # commit order
    assert df["weight"].tolist() == [4.0, 2.0, 1.0]  # weight, else rating, else 1
    assert df["rating"].isna().tolist() == [False, True, True]
    assert df["timestamp"].dtype == np.int64 and df["user_id"].dtype == np.int64
    user = store.events_for_user(1)
    assert user["item_id"].tolist() == [11, 10]  # oldest first
    assert store.events_for_user(3).empty


def test_wal_and_full_sync(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "feedback.db")
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert store._query("PRAGMA synchronous", [])[0][0] == 2  # FULL
    store.close()


def test_id_types_preserved(store: EventStore) -> None:
    store.append(
        pd.DataFrame(
            {
                "user_id": ["7", 7, np.int64(8)],
                "item_id": ["a", "1", 1],
                "timestamp": ["2024-01-01T00:00:00Z", 5, 6.0],
            }
        )
    )
    df = store.all_events()
    assert [type(v) for v in df["user_id"]] == [str, int, int]
    assert df["user_id"].tolist() == ["7", 7, 8]
    assert df["item_id"].tolist() == ["a", "1", 1]
    assert df["timestamp"].tolist() == [1704067200, 5, 6]
    assert store.events_for_user("7")["item_id"].tolist() == ["a"]
    assert store.events_for_user(7)["item_id"].tolist() == ["1"]


def test_append_events_returns_what_was_stored(store: EventStore) -> None:
    store.append(EVENTS[:1])
    stored = store.append_events(
        [{"user_id": "9", "item_id": 10, "timestamp": "1970-01-01T00:01:40Z"}], user_key=int
    )
    assert stored.index.tolist() == [2]
    assert (
        stored.to_dict(orient="records")
        == [{"user_id": 9, "item_id": 10, "timestamp": 100, "rating": None, "weight": 1.0}]
        or stored.iloc[0]["user_id"] == 9
    )
    pd.testing.assert_frame_equal(stored, store.all_events(since=1))
    assert store.append_events([]).empty


def test_a_large_append_keeps_order_and_numbers_every_event(
    store: EventStore, tmp_path: Path
) -> None:
    # 1,000 events go in several multi-row statements; each keeps its place and its seq
    store.append(EVENTS[:1])
    events = [
        {"user_id": n % 7, "item_id": n, "timestamp": 1_000 + n, "rating": n % 5 or None}
        for n in range(1000)
    ]
    stored = store.append_events(events)
    assert stored.index.tolist() == list(range(2, 1002))
    df = store.all_events(since=1)
    assert df.index.tolist() == list(range(2, 1002))
    assert df["item_id"].tolist() == list(range(1000))
    assert df["rating"].isna().sum() == 200 and df.loc[1001, "rating"] == 4
    # a copy keeps the numbers it is given, across statements too
    other = FeedbackStore(tmp_path / "copy.db")
    assert other.copy_from(store) == 1001
    pd.testing.assert_frame_equal(other.all_events(), store.all_events())
    other.close()


def test_since_until_by_sequence(store: EventStore) -> None:
    store.append(EVENTS[:2])
    mark = store.last_seq()
    store.append(EVENTS[2:])
    assert len(store.all_events(until=mark)) == 2
    assert store.all_events(since=mark)["user_id"].tolist() == [2]
    assert store.events_for_user(1, since=mark).empty


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"item_id": 1, "timestamp": 1}, "events[1].user_id"),
        ({"user_id": 1, "item_id": 1, "timestamp": "yesterday"}, "events[1].timestamp"),
        ({"user_id": 1, "item_id": 1, "timestamp": 1e300}, "events[1].timestamp"),
        ({"user_id": 1, "item_id": 1, "timestamp": "1e400"}, "events[1].timestamp"),
        ({"user_id": 1, "item_id": 1, "timestamp": 1, "rating": "x"}, "events[1].rating"),
        ({"user_id": 1, "item_id": 1, "timestamp": 1, "weight": -1}, "events[1].weight"),
        ({"user_id": True, "item_id": 1, "timestamp": 1}, "events[1].user_id"),
        ({"user_id": 1, "item_id": [1], "timestamp": 1}, "events[1].item_id"),
    ],
)
def test_bad_event_stores_nothing(store: EventStore, event: dict, field: str) -> None:
    with pytest.raises(InputError) as err:
        store.append([EVENTS[0], event])
    assert err.value.field == field
    assert store.count() == 0


def test_schema_validation_against_catalogue(store: EventStore) -> None:
    items = pd.DataFrame({"item_id": [10, 11], "title": ["A", "B"]})
    with pytest.raises(ValidationError) as err:
        store.append([EVENTS[0], {"user_id": 1, "item_id": 99, "timestamp": 1}], items=items)
    assert "item_id exists in items" in err.value.failures["check"].tolist()
    assert store.count() == 0
    assert store.append([{"user_id": "1", "item_id": "11", "timestamp": 5}], items=items) == 1
    assert store.events_for_user(1)["item_id"].tolist() == [11]  # normalised like the log


def test_user_key_maps_ids_to_the_log_type(store: EventStore) -> None:
    items = pd.DataFrame({"item_id": ["a", "b"], "title": ["A", "B"]})
    # The schema alone would turn an all-digit request's "1" into the int 1; a model
    # whose log has string user ids wants "1" kept as a string.
    store.append([{"user_id": "1", "item_id": "b", "timestamp": 5}], items=items, user_key=str)
    assert store.events_for_user("1")["item_id"].tolist() == ["b"]
    assert store.events_for_user(1).empty


def test_to_history(store: EventStore) -> None:
    store.append(EVENTS + [{"user_id": 1, "item_id": 999, "timestamp": 50}])
    h = to_history(store.events_for_user(1), {10: 0, 11: 1})
    assert h.items.tolist() == [1, 0]  # 999 is not in the catalogue
    assert h.timestamps.tolist() == [100, 300]
    assert h.weights.tolist() == [2.0, 4.0]


def test_fold_events_for_refresh(store: EventStore) -> None:
    log = pd.DataFrame({"user_id": [1], "item_id": [12], "timestamp": [50], "weight": [1.0]})
    store.append(EVENTS[:2])
    folded, seq = fold_events(log, store)
    assert seq == 2
    assert folded["item_id"].tolist() == [12, 11, 10]  # user 1 by time
    assert folded["user_id"].dtype == np.int64 and "rating" in folded.columns
    store.append(EVENTS[2:])
    again, seq2 = fold_events(folded, store, since=seq)
    assert seq2 == 3 and len(again) == 4  # only the new event is added


def test_concurrent_writers_lose_nothing(target: str) -> None:
    shared = open_store(target)
    n_threads, per_thread = 8, 25

    def writer(t: int) -> None:
        own = open_store(target) if t % 2 else shared  # private and shared connections
        for i in range(per_thread):
            own.append([{"user_id": t, "item_id": f"i{i}", "timestamp": i}])
        if own is not shared:
            own.close()

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    df = shared.all_events()
    assert len(df) == n_threads * per_thread
    assert df.groupby("user_id").size().tolist() == [per_thread] * n_threads
    assert df.index.is_unique
    shared.close()


def test_high_water_marks_see_every_event_once_under_concurrent_writers(target: str) -> None:
    """What a replica's sync does: read ``seq > mark``, move the mark to the largest seq.

    With writers racing, a seq may be drawn before a smaller one commits; a store whose
    seq order were not commit order would let the mark jump past an event for good.
    """
    n_threads, per_thread = 8, 30
    acked: list[int] = []
    acked_lock = threading.Lock()
    done = threading.Event()
    errors: list[BaseException] = []

    def writer(t: int) -> None:
        try:
            with open_store(target) as own:
                for i in range(per_thread):
                    batch = [{"user_id": t, "item_id": f"i{i}", "timestamp": i}] * 3
                    seqs = own.append_events(batch).index.tolist()
                    with acked_lock:
                        acked.extend(seqs)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    reader = open_store(target)
    seen: list[int] = []
    mark = 0
    threads = [threading.Thread(target=writer, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    watcher = threading.Thread(target=lambda: [th.join() for th in threads] and done.set())
    watcher.start()
    reads = 0
    while True:
        finished = done.is_set()  # read once more after the last writer returned
        if reader.last_seq() > mark:
            new = reader.all_events(since=mark)
            seen.extend(new.index.tolist())
            mark = max(mark, int(new.index.max()))
            reads += 1
        if finished:
            break
    watcher.join()
    reader.close()
    assert not errors, errors
    assert len(acked) == n_threads * per_thread * 3
    assert reads > 1  # the reader really raced the writers
    assert sorted(seen) == sorted(acked)  # every acknowledged event, exactly once


def test_copy_keeps_every_seq_and_numbers_new_events_after(target: str, tmp_path: Path) -> None:
    with FeedbackStore(tmp_path / "old.db") as old:
        old.append(EVENTS)
        old.append([{"user_id": "7", "item_id": "a", "timestamp": 5}])
        with open_store(target) as new:
            assert new.copy_from(old, batch=2) == 4
            pd.testing.assert_frame_equal(new.all_events(), old.all_events())
            assert new.append_events(EVENTS[:1]).index.tolist() == [5]
            with pytest.raises(InputError, match="empty store"):
                new.copy_from(old)


def test_closed_store_raises(target: str) -> None:
    store = open_store(target)
    store.close()
    with pytest.raises(InputError, match="closed"):
        store.append(EVENTS)


_WRITER = textwrap.dedent(
    """
    import sys
    from recommender.feedback import open_store

    store = open_store(sys.argv[1])
    for i in range(100_000):
        store.append([{"user_id": "u", "item_id": i, "timestamp": i}])
        print("acked", i, flush=True)
    """
)


def test_acknowledged_events_survive_kill_9(target: str) -> None:
    path = target
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    acked: list[int] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            acked.append(int(line.split()[1]))
            if len(acked) >= 200:
                break
        proc.send_signal(signal.SIGKILL)  # mid-stream: no chance to close or checkpoint
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    acked += [int(line.split()[1]) for line in rest.splitlines() if line.startswith("acked")]
    assert proc.returncode == -signal.SIGKILL
    with open_store(path) as reopened:
        stored = set(reopened.all_events()["item_id"].tolist())
    assert len(acked) >= 200
    assert set(acked) <= stored


def test_reads_do_not_wait_for_a_write_in_progress(tmp_path):
    """The request path's check for new events reads through its own connection: a
    write of this process (impressions syncing to disk) does not hold it up, and what
    was committed before is seen."""
    store = FeedbackStore(tmp_path / "f.db")
    store.append(EVENTS)
    got = []
    with store._lock:  # a writer of this process mid-transaction
        reader = threading.Thread(target=lambda: got.append(store.last_seq()))
        reader.start()
        reader.join(10)
        assert not reader.is_alive(), "last_seq waited for the write lock"
    assert got == [3]
    store.close()
