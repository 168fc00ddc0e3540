"""The invariants of one order's fulfilment, read from an exploration's in-memory stores.

The saga is finished (completed or cancelled, nothing left to send); a cancelled order holds
no stock and keeps no charge (charged - refunded = 0); a confirmed order is charged exactly
its total and its stock is committed once; no effect is applied twice; no command of the
saga was refused (only an upstream cancellation of a confirmed order may be).
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import TYPE_CHECKING

from messages.inventory import StockCommitted, StockHeld, StockHoldReleased, reservation_stream
from messages.orders import OrderCancelled, OrderConfirmed, order_stream
from messages.payments import PaymentCharged, PaymentRefunded, payment_stream
from sagas.state import SagaStatus

if TYPE_CHECKING:
    from workers.workloads.exploration.world import World


def violations(world: World) -> list[str]:
    order = world.order
    record = world.sagas.load(str(order.order_id))
    if record is None:
        return ["no saga was started"]
    found = [f"saga ended {record.state.status}"] if record.state.status not in _ENDS else []
    if record.pending:
        found.append(f"saga left {[m.type_name() for m in record.pending]} unsent")
    found += _effects_once(world)
    confirmed = _count(world, order_stream(order.order_id), OrderConfirmed)
    cancelled = _count(world, order_stream(order.order_id), OrderCancelled)
    if (confirmed, cancelled) not in ((1, 0), (0, 1)):
        found.append(f"order confirmed {confirmed}x, cancelled {cancelled}x")
    expected = _END[record.state.status] if record.state.status in _ENDS else None
    if (expected == "confirmed" and not confirmed) or (expected == "cancelled" and not cancelled):
        found.append(f"saga {record.state.status} but the order is not {expected}")
    found += _money(world, kept=bool(confirmed))
    found += _stock(world, committed=bool(confirmed))
    found += [r for r in world.rejected if not r.startswith("CancelOrder")]
    return found


_ENDS = (SagaStatus.COMPLETED, SagaStatus.CANCELLED)
_END = {SagaStatus.COMPLETED: "confirmed", SagaStatus.CANCELLED: "cancelled"}


def _count(world: World, stream: str, kind: type) -> int:
    return sum(isinstance(e, kind) for e in world.events.events(stream))


def _money(world: World, *, kept: bool) -> list[str]:
    events = world.events.events(payment_stream(world.order.order_id))
    charged = sum((e.amount for e in events if isinstance(e, PaymentCharged)), Decimal(0))
    refunded = sum((e.amount for e in events if isinstance(e, PaymentRefunded)), Decimal(0))
    total = sum((ln.amount for ln in world.order.lines), Decimal(0))
    expected = total if kept else Decimal(0)
    if charged - refunded != expected:
        return [f"charged {charged} - refunded {refunded} != {expected}"]
    return []


def _stock(world: World, *, committed: bool) -> list[str]:
    found: list[str] = []
    commits = _count(world, reservation_stream(world.order.order_id), StockCommitted)
    if commits != (1 if committed else 0):
        found.append(f"stock committed {commits}x")
    for line in world.order.lines:
        held = sum(
            e.quantity if isinstance(e, StockHeld) else -e.quantity
            for e in world.events.events(f"sku-{line.sku}")
            if isinstance(e, StockHeld | StockHoldReleased) and e.order_id == world.order.order_id
        )
        if held != (line.quantity if committed else 0):
            found.append(f"sku {line.sku}: {held} held at the end")
    return found


def _effects_once(world: World) -> list[str]:
    """Each effect at most once: per stream, per kind (and per order on a SKU)."""
    seen: Counter[tuple[str, str]] = Counter()
    for stream, commits in world.events.streams.items():
        for commit in commits:
            for event in commit.events:
                if getattr(event, "order_id", None) == world.order.order_id:
                    seen[(stream, event.type_name())] += 1
    return [f"{kind} on {stream} {n}x" for (stream, kind), n in seen.items() if n > 1]
