"""``ReserveStock`` in one write: every hold and the reservation in one ordered insert.

The common case: the SKUs' states are in the process's cache (``workers.write.cache``),
each has the stock, and the order's reservation stream is new. Then the holds and the
``StockReserved`` go to the store in one ``insert_many`` (``EventStore.append_all``), in the
order the careful path appends them one by one (SKUs in order, the reservation last), and
the store stops at the first that collides, where that path would have stopped at a
conflict. A SKU that collides is read and the rest written once more. Anything else (a
shortage seen on cached state, which may be stale; a second collision; a reservation that
exists already) goes to that path (``Inventory``), which reads the streams and finds the
holds already stored under their ids (``hold_id``).
"""

from __future__ import annotations

from collections.abc import Callable

from messages import caused_by
from messages.inventory import (
    ReserveStock,
    StockLine,
    StockReserved,
    reservation_stream,
    sku_stream,
)
from readstore.eventlog import Commit
from workers.contexts.stock import Reservation, Sku, acting_as, hold_id
from workers.write.aggregates import Aggregate
from workers.write.cache import CACHE
from workers.write.commands import Session
from workers.write.eventstore import Append, EventStore

Publish = Callable[[Commit, EventStore], None]


def reserve_at_once(
    store: EventStore, command: ReserveStock, lines: tuple[StockLine, ...], publish: Publish
) -> bool:
    """Whether the order's stock is now reserved by one write; ``False``: the careful path.

    A SKU whose cached copy was stale collides: it is read and the write tried once more
    for the lines not yet held (another process had moved it; a hold delivered twice
    collides again and goes to the careful path).
    """
    held: set[str] = set()
    for _ in range(2):
        done = _try(store, command, lines, publish, held)
        if done is not None:
            return done
    return False


def _try(
    store: EventStore,
    command: ReserveStock,
    lines: tuple[StockLine, ...],
    publish: Publish,
    held: set[str],
) -> bool | None:
    """One write of the holds not in ``held`` and the reservation; ``None``: a SKU collided."""
    todo = [line for line in lines if line.sku not in held]
    streams = [sku_stream(line.sku) for line in todo]
    stream = reservation_stream(command.order_id)
    session = Session(store, CACHE, frozenset([*streams, stream]))
    session.prefetch(streams)  # what the cache lacks: read once per SKU and process
    skus = [session.load(Sku, s) for s in streams]
    actions = [acting_as(command, hold_id(command.order_id, line.sku)) for line in todo]
    for sku, line, action in zip(skus, todo, actions, strict=True):
        if sku.hold(line, command.order_id, action) == "short":
            return False
    reservation = Reservation(stream)
    reservation.record(caused_by(StockReserved, command, order_id=command.order_id, lines=lines))
    aggregates: list[Aggregate] = [*skus, reservation]
    appends: list[Append] = [
        (sku.stream_id, sku.version, sku.changes, action)
        for sku, action in zip(skus, actions, strict=True)
    ]
    appends.append((stream, 0, reservation.changes, command))
    stored = store.append_all(appends)
    for commit, aggregate in zip(stored, aggregates, strict=False):
        publish(commit, store)
        session.committed(aggregate, commit)
    held.update(line.sku for line in todo[: len(stored)])
    if len(stored) == len(appends):
        return True
    session.forget(appends[len(stored)][0])
    return None if len(stored) < len(todo) else False
