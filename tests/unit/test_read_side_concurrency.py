"""Projections under concurrent writers: several threads apply one history's events at
once, shuffled, many twice, some cut off half way through their write (a worker killed) and
delivered again; every model then equals a rebuild from the log."""

from __future__ import annotations

import os
import queue
import random
import threading
from typing import Any

import pytest

from readstore.eventlog import iter_commits
from readstore.projection import Projection
from readstore.verify import verify_projection
from tests.readside import seed_fulfilment
from tests.unit.test_rebuild import KINDS
from workers.write.eventstore import EventStore

#: Rounds per projection (``SAGAWORKS_CONCURRENCY_ROUNDS`` to hunt longer).
ROUNDS = int(os.environ.get("SAGAWORKS_CONCURRENCY_ROUNDS", "8"))
THREADS = 6


def cut_short(projection: Projection, event: Any, rng: random.Random) -> None:
    """Run only a first part of ``event``'s steps, as a worker killed mid-write leaves it."""
    steps = projection.steps(event, projection.place(event))
    if len(steps) > 1:
        projection.documents.run(steps[: rng.randrange(1, len(steps))])


def deliver(kind: type[Projection], database: Any, work: queue.Queue[Any], seed: int) -> None:
    rng = random.Random(seed)
    projection = kind(database)
    while True:
        try:
            event = work.get_nowait()
        except queue.Empty:
            return
        if rng.random() < 0.1:
            cut_short(projection, event, rng)
            work.put(event)  # the broker delivers it again
            continue
        batch = [event]
        while rng.random() < 0.5:
            try:
                batch.append(work.get_nowait())
            except queue.Empty:
                break
        for late, outcome in zip(batch, applied(projection, batch), strict=True):
            if isinstance(outcome, Exception):  # its message fails: the broker delivers it again
                work.put(late)


def applied(projection: Projection, batch: list[Any]) -> list[bool | Exception]:
    """As a worker applies them: a batch, or one event alone; its failure as the outcome."""
    if len(batch) > 1:
        return projection.apply_batch(batch)
    try:
        return [projection.apply(batch[0])]
    except Exception as exc:  # a repair that kept meeting other writers, say
        return [exc]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.name)
def test_concurrent_writers_with_cut_off_writes_end_as_a_rebuild(database, kind):
    # Given a history of orders through stock, payment and confirmation
    seed_fulfilment(EventStore(database), orders=16, seed=11)
    events = [e for c in iter_commits(database) for e in c.events if isinstance(e, kind.handles)]

    for round_ in range(ROUNDS):
        # When six threads apply its events at once: shuffled, half of them twice, a tenth
        # of the deliveries cut off half way and delivered again
        for name in kind(database).collection_names():
            database[name].drop()
        rng = random.Random(round_)
        deliveries = events + rng.sample(events, len(events) // 2)
        rng.shuffle(deliveries)
        work: queue.Queue[Any] = queue.Queue()
        for event in deliveries:
            work.put(event)
        threads = [
            threading.Thread(target=deliver, args=(kind, database, work, round_ * 100 + t))
            for t in range(THREADS)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
        deliver(kind, database, work, round_)  # what was put back after the others ended

        # Then the model equals a rebuild from the log
        verification = verify_projection(database, kind)
        assert verification.consistent, (round_, verification.differences[:5])
