"""The store's time per collection, from two readings of its ``top`` command."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pymongo.errors import OperationFailure

from workers.workloads import storetime


def counters(micros: int, count: int) -> dict[str, Any]:
    return {"total": {"time": micros, "count": count}, "insert": {"time": 0, "count": 0}}


def test_only_the_benchs_database_is_read_and_names_lose_its_prefix() -> None:
    # Given top's totals for the bench's database, another one, and its note
    totals = {
        "note": "all times in microseconds",
        "bench_1.sagas": counters(5000, 10),
        "bench_1.commits": counters(9000, 30),
        "bench_10.sagas": counters(1, 1),
        "other.sagas": counters(7, 7),
    }

    # Then only bench_1's collections are read, by their own names
    assert storetime.collections_of(totals, "bench_1") == {
        "sagas": (5000, 10),
        "commits": (9000, 30),
    }


def test_rows_are_the_difference_per_order_busiest_first_with_each_share() -> None:
    before = {"sagas": (1_000, 2), "commits": (500, 1), "idle": (70, 3)}
    after = {"sagas": (41_000, 42), "commits": (20_500, 61), "idle": (70, 3), "new": (0, 0)}

    table = storetime.rows(before, after, orders=10)

    # Then each collection the run used costs its difference per order, and the shares add up
    assert table == [
        {"collection": "sagas", "store_ms": 4.0, "operations": 4.0, "share": 0.667},
        {"collection": "commits", "store_ms": 2.0, "operations": 6.0, "share": 0.333},
    ]
    text = "\n".join(storetime.render(table))
    assert "| sagas | 4.0 | 4.0 | 67% |" in text
    assert "| **total** | 6.0 | | |" in text


def test_a_store_that_does_not_answer_top_gives_the_reason() -> None:
    class Admin:
        def command(self, name: str) -> dict[str, Any]:
            raise OperationFailure("no such command: 'top'", code=59)

    class Client:
        admin = Admin()

    reading = storetime.read_top(Client(), "bench")  # type: ignore[arg-type]  # a stand-in

    assert isinstance(reading, str) and "no such command" in reading
    assert storetime.render(reading) == [f"store time by collection: not available ({reading})"]


def test_a_process_cpu_time_grows_while_it_works() -> None:
    # Given this process's CPU time
    before = storetime.process_cpu_seconds(os.getpid())
    assert before is not None and before > 0

    # When it works for a moment
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass

    # Then its CPU time, as another process would read it, grew by about as much
    after = storetime.process_cpu_seconds(os.getpid())
    assert after is not None and 0.2 <= after - before <= 2.0


def test_a_process_that_is_gone_has_no_cpu_time() -> None:
    assert storetime.process_cpu_seconds(2**22 + 12345) is None


def test_top_counters_of_an_unexpected_shape_are_left_out_not_raised() -> None:
    # Given top's totals where one collection's counters lack "total", one has text for a
    # number, and one is not an object at all
    totals = {
        "bench.sagas": counters(5000, 10),
        "bench.partial": {"insert": {"time": 1, "count": 1}},
        "bench.texty": {"total": {"time": "many", "count": 3}},
        "bench.odd": [1, 2],
    }

    # Then the well-formed one is read and the others are left out
    assert storetime.collections_of(totals, "bench") == {"sagas": (5000, 10)}


def test_a_collection_whose_counters_went_back_during_the_run_is_left_out() -> None:
    # Given a collection dropped and made again during the run (its counters started over)
    before = {"sagas": (40_000, 40), "orders": (9_000, 10)}
    after = {"sagas": (60_000, 60), "orders": (3_000, 12)}

    # Then only the collection whose counters only grew is shown
    assert [row["collection"] for row in storetime.rows(before, after, orders=10)] == ["sagas"]


def test_a_stat_file_of_an_unexpected_shape_gives_no_cpu_time(tmp_path: Path) -> None:
    # Given a /proc stat line cut short
    stat = tmp_path / "stat"
    stat.write_text("123 (python) S 1 2")

    # Then there is no CPU time, and no error
    assert storetime.cpu_seconds_in(stat) is None


def test_top_totals_that_are_not_a_document_give_the_reason() -> None:
    class Admin:
        def command(self, name: str) -> dict[str, Any]:
            return {"totals": ["not", "a", "document"], "ok": 1}

    class Client:
        admin = Admin()

    reading = storetime.read_top(Client(), "bench")  # type: ignore[arg-type]  # a stand-in

    assert reading == "top answered list totals, not a document"
