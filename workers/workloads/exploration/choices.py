"""What may happen next in a saga exploration's world, and making it happen.

``options`` lists the choices at one point: deliver any message in flight, let the sweeper
fire a deadline that has come, or spend a perturbation of the budget: time passes beyond a
step's deadline, an upstream ``CancelOrder`` arrives, a delivered message comes again, the
saga's next send fails, or a message is overtaken between its read and its write by
another one (two workers racing). ``step`` applies one choice and writes it in the trace.
"""

from __future__ import annotations

import uuid

from messages.orders import CancelOrder, OrderPlaced, PlaceOrder
from workers.workloads.exploration.model import Choice, Delivery, label
from workers.workloads.exploration.world import World, delivery_id


def options(world: World) -> list[Choice]:
    seen: set[tuple[str, str]] = set()
    found: list[Choice] = []
    for i, delivery in enumerate(world.inflight):
        if _deliverable(world, delivery) and delivery_id(delivery) not in seen:
            seen.add(delivery_id(delivery))
            found.append(("deliver", i))
    if world.due() is not None:
        found.append(("sweep", 0))
    if not world.inflight:
        found.append(("stop", 0))
    return found + _perturbations(world)


def _deliverable(world: World, delivery: Delivery) -> bool:
    target, message = delivery
    started = world.sagas.load(str(world.order.order_id)) is not None
    # Before its saga exists a message for it would only be retried.
    return target != "saga" or started or isinstance(message, OrderPlaced)


def _perturbations(world: World) -> list[Choice]:
    found: list[Choice] = []
    if world.budget.deadlines and world.running():
        found.append(("deadline", 0))
    if world.budget.cancels:
        found.append(("cancel", 0))
    if world.budget.failures and not world.fail_next:
        found.append(("fail", 0))
    if world.budget.duplicates:
        ids: dict[tuple[str, str], int] = {}
        for k, delivery in enumerate(world.delivered):
            ids.setdefault(delivery_id(delivery), k)
        found += [("duplicate", k) for k in ids.values()]
    if world.budget.races:
        found += [("race", k) for k in _races(world)]
    return found


def _races(world: World) -> list[int]:
    """Ordered pairs of distinct messages in flight, as ``first * n + second``."""
    n, pairs, seen = len(world.inflight), [], set()
    for i, first in enumerate(world.inflight):
        for j, second in enumerate(world.inflight):
            pair = (delivery_id(first), delivery_id(second))
            if pair[0] != pair[1] and pair not in seen and _deliverable(world, first):
                seen.add(pair)
                pairs.append(i * n + j)
    return pairs


def apply(world: World, choice: Choice) -> None:
    kind, index = choice
    if kind == "deliver":
        world.deliver(world.inflight.pop(index))
    elif kind == "sweep":
        world.sweep()
    elif kind == "deadline":
        world.budget = world.budget.spend("deadlines")
        world.pass_time()
    elif kind == "cancel":
        world.budget = world.budget.spend("cancels")
        cancel = _upstream_cancel(world.order)
        label(cancel)
        world.inflight.append(("orders", cancel))
    elif kind == "fail":
        world.budget, world.fail_next = world.budget.spend("failures"), True
    elif kind == "duplicate":
        world.budget = world.budget.spend("duplicates")
        world.inflight.append(world.delivered[index])
    elif kind == "race":
        world.budget = world.budget.spend("races")
        world.race(*divmod(index, len(world.inflight)))


def _upstream_cancel(order: PlaceOrder) -> CancelOrder:
    message_id = uuid.uuid5(order.order_id, "upstream cancel")
    return CancelOrder(message_id=message_id, order_id=order.order_id, reason="customer cancelled")


def describe(delivery: Delivery) -> str:
    target, message = delivery
    return f"{message.type_name()}->{target}"


def step(world: World, choice: Choice) -> None:
    kind, index = choice
    label = kind
    if kind == "deliver":
        label = f"deliver {describe(world.inflight[index])}"
    elif kind == "duplicate":
        label = f"duplicate {describe(world.delivered[index])}"
    elif kind == "race":
        first, second = divmod(index, len(world.inflight))
        label = f"race {describe(world.inflight[first])} overtaken by "
        label += describe(world.inflight[second])
    world.trace.append(label)
    apply(world, choice)
