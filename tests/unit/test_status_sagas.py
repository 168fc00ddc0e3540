"""`sagaworks status` counts sagas by state and flags the ones stuck past their deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from workers.ops.status import Status, attention, overdue_sagas, sagas_by_state


def test_sagas_are_counted_by_state_and_stuck_ones_need_attention(database):
    # Given sagas: one finished, one waiting within its deadline, one long past it
    now = datetime.now(UTC)
    database.sagas.insert_many(
        [
            {"_id": "a", "status": "completed", "deadline": None},
            {"_id": "b", "status": "charging", "deadline": now + timedelta(seconds=20)},
            {"_id": "c", "status": "charging", "deadline": now - timedelta(minutes=30)},
        ]
    )

    # When status measures them
    by_state, stuck = sagas_by_state(database), overdue_sagas(database)
    notes = attention(Status([], {}, by_state, 0, overdue_sagas=stuck), max_lag=1000)

    # Then the states are counted, and only the stuck one needs attention
    assert by_state == {"completed": 1, "charging": 2}
    assert stuck == 1
    assert notes == ["1 saga(s) past their step deadline: sagaworks sagas list --older-than 5m"]
