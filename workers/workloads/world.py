"""One order's world for the saga exploration: stores, messages in flight, a budget of faults.

``World.options`` lists what may happen next (deliver any message in flight, or spend a
perturbation: a deadline fires, an upstream ``CancelOrder``, a duplicate, a failed send);
``World.apply`` makes it happen on the real saga runner and the real deciders; ``World.key``
is what its future depends on, so explorations can count orderings without walking twice
the same world; ``World.finish`` lets the sweeper end the saga and checks the invariants.
"""

from __future__ import annotations

import uuid
from collections.abc import Hashable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from decimal import Decimal

from messages import Command, Event, Message
from messages.customers import RegisterCustomer
from messages.errors import CommandRejected
from messages.fulfilment import StepDeadlinePassed
from messages.inventory import AddStock, CommitStock, ReleaseStock, ReserveStock
from messages.orders import Address, CancelOrder, OrderLine, OrderPlaced, PlaceOrder
from sagas.fulfilment import HANDLES
from sagas.outbox import deadline_passed
from sagas.runner import Runner, SagaNotStarted
from sagas.state import TERMINAL
from workers.contexts import orders as _orders  # noqa: F401 -- registers the order handlers
from workers.contexts.inventory import Inventory
from workers.workloads.memory import _EPOCH, MemoryEventStore, MemorySagaStore
from workers.workloads.saga_invariants import violations
from workers.write.commands import execute

ADDRESS = Address(name="Ada", street="1 Main St", city="Springfield", postal_code="1", country="US")
Delivery = tuple[str, Message]
Choice = tuple[str, int]


class SendFailed(Exception):
    """The broker refused a send (injected): the message being handled is redelivered."""


@dataclass(frozen=True)
class Scenario:
    name: str
    stock: int
    method: str


SCENARIOS = (
    Scenario("in stock, card", 5, "card"),
    Scenario("short of stock", 1, "card"),
    Scenario("card declined", 5, "declined-card"),
)


@dataclass(frozen=True)
class Budget:
    """How many of each perturbation one run may spend."""

    deadlines: int = 1
    cancels: int = 1
    duplicates: int = 1
    failures: int = 1

    def spend(self, kind: str) -> Budget:
        return replace(self, **{kind: getattr(self, kind) - 1})


@dataclass
class World:
    """One order's world at one point of one run: stores, messages in flight, what is left."""

    order: PlaceOrder
    events: MemoryEventStore
    sagas: MemorySagaStore
    budget: Budget
    inflight: list[Delivery] = field(default_factory=list)
    delivered: list[Delivery] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    covered: set[tuple[str, str]] = field(default_factory=set)
    trace: list[str] = field(default_factory=list)
    fail_next: bool = False
    seen: int = 0

    @classmethod
    def start(
        cls, scenario: Scenario, budget: Budget, covered: set[tuple[str, str]] | None = None
    ) -> World:
        customer = RegisterCustomer(customer_id=uuid.uuid4(), name="Ada", email="ada@example.com")
        order = PlaceOrder(
            order_id=uuid.uuid4(),
            customer_id=customer.customer_id,
            lines=(
                OrderLine(sku="A", quantity=1, unit_price=Decimal("4.00")),
                OrderLine(sku="B", quantity=2, unit_price=Decimal("3.00")),
            ),
            shipping_address=ADDRESS,
            payment_method=scenario.method,
        )
        world = cls(order, MemoryEventStore(), MemorySagaStore({}), budget)
        world.covered = covered if covered is not None else set()
        for command in (customer, AddStock(sku="A", quantity=5)):
            execute(command, world.events)
        execute(AddStock(sku="B", quantity=scenario.stock), world.events)
        world.seen = len(world.events.appended)
        execute(order, world.events)
        world.collect()
        return world

    def copy(self) -> World:
        return replace(
            self,
            events=self.events.copy(),
            sagas=self.sagas.copy(),
            inflight=list(self.inflight),
            delivered=list(self.delivered),
            rejected=list(self.rejected),
            trace=list(self.trace),
        )

    # -- choices -------------------------------------------------------------------------
    def options(self) -> list[Choice]:
        seen: set[tuple[str, str]] = set()
        found: list[Choice] = []
        started = self.sagas.load(str(self.order.order_id)) is not None
        for i, (target, message) in enumerate(self.inflight):
            if target == "saga" and not started and not isinstance(message, OrderPlaced):
                continue  # it would only be retried: the saga does not exist yet
            if (target, str(message.message_id)) not in seen:
                seen.add((target, str(message.message_id)))
                found.append(("deliver", i))
        if not self.inflight:
            found.append(("stop", 0))
        return found + self._perturbations()

    def _perturbations(self) -> list[Choice]:
        found: list[Choice] = []
        if self.budget.deadlines and self._running():
            found.append(("deadline", 0))
        if self.budget.cancels:
            found.append(("cancel", 0))
        if self.budget.failures and not self.fail_next:
            found.append(("fail", 0))
        if self.budget.duplicates:
            ids: dict[tuple[str, str], int] = {}
            for k, (target, message) in enumerate(self.delivered):
                ids.setdefault((target, str(message.message_id)), k)
            found += [("duplicate", k) for k in ids.values()]
        return found

    def apply(self, choice: Choice) -> None:
        kind, index = choice
        if kind == "deliver":
            self.deliver(self.inflight.pop(index))
        elif kind == "deadline":
            self.budget = self.budget.spend("deadlines")
            self._fire_deadline()
        elif kind == "cancel":
            self.budget = self.budget.spend("cancels")
            cancel = _upstream_cancel(self.order)
            label(cancel)
            self.inflight.append(("orders", cancel))
        elif kind == "fail":
            self.budget, self.fail_next = self.budget.spend("failures"), True
        elif kind == "duplicate":
            self.budget = self.budget.spend("duplicates")
            self.inflight.append(self.delivered[index])

    # -- the system --------------------------------------------------------------------------
    def deliver(self, delivery: Delivery) -> None:
        target, message = delivery
        try:
            if target == "saga":
                self._saga(message)
            else:
                self._context(message)
        except (SendFailed, SagaNotStarted):
            self.inflight.append(delivery)  # Dramatiq retries it later
            return
        except CommandRejected as exc:
            self.rejected.append(f"{message.type_name()}: {exc}")
        self.delivered.append(delivery)
        self.collect()

    def _saga(self, message: Message) -> None:
        record = self.sagas.load(str(self.order.order_id))
        if record is not None and str(message.message_id) not in record.handled:
            self.covered.add((record.state.status.value, message.type_name()))
        # The clock moves with the saga's version: the same history gives the same deadlines.
        now = _EPOCH + timedelta(seconds=record.version if record is not None else 0)
        Runner(self.sagas, self._send, self.sagas.forget, 1.0, 3).run(message, now)

    def _send(self, message: Message) -> None:
        if self.fail_next:
            self.fail_next = False
            raise SendFailed(message.type_name())
        assert isinstance(message, Command)
        label(message)
        self.inflight.append((message.CONTEXT, message))

    def _context(self, message: Message) -> None:
        inventory = Inventory(self.events, 3, publish=lambda commit, store: None)
        if isinstance(message, ReserveStock):
            inventory.reserve(message)
        elif isinstance(message, ReleaseStock):
            inventory.release(message)
        elif isinstance(message, CommitStock):
            inventory.commit(message)
        else:
            assert isinstance(message, Command)
            execute(message, self.events)

    def collect(self) -> None:
        """The outbox: every event committed since last time, to the saga if it takes it."""
        for commit in self.events.appended[self.seen :]:
            for event in commit.events:
                label(event)
                if isinstance(event, HANDLES):
                    self.inflight.append(("saga", event))
        self.seen = len(self.events.appended)

    def key(self) -> Hashable:
        """What the future of this world depends on: equal keys, equal futures."""
        record = self.sagas.load(str(self.order.order_id))
        saga = None
        if record is not None:
            handled = frozenset(LABELS.get(h, h) for h in record.handled)
            pending = tuple(label(m) for m in record.pending)
            saga = (record.version, record.state.model_dump_json(), handled, pending)
        streams = tuple(sorted(self.events.signature.items()))
        return (
            tuple(sorted(t + label(m) for t, m in self.inflight)),
            frozenset(t + label(m) for t, m in self.delivered),
            streams,
            saga,
            self.budget,
            self.fail_next,
            tuple(sorted(self.rejected)),
        )

    def _running(self) -> bool:
        record = self.sagas.load(str(self.order.order_id))
        return record is not None and record.state.status not in TERMINAL

    def _fire_deadline(self) -> None:
        record = self.sagas.load(str(self.order.order_id))
        if record is not None and record.state.status not in TERMINAL:
            deadline = deadline_passed(record.state)
            label(deadline)
            self.inflight.append(("saga", deadline))

    def finish(self) -> list[str]:
        """Let the sweeper fire what is left (every message delivered), then check."""
        for _ in range(6):
            if not self._running():
                break
            self._fire_deadline()
            while self.inflight:
                self.deliver(self.inflight.pop(0))
        return violations(self)


def _upstream_cancel(order: PlaceOrder) -> CancelOrder:
    message_id = uuid.uuid5(order.order_id, "upstream cancel")
    return CancelOrder(message_id=message_id, order_id=order.order_id, reason="customer cancelled")


#: Every message id met, by a label that is the same in every world of an exploration.
LABELS: dict[str, str] = {}
_BY_ID: dict[uuid.UUID, str] = {}


def label(message: Message) -> str:
    """``StockReserved@reservation-…:1`` for an event, the type (and step) for the rest."""
    known = _BY_ID.get(message.message_id)
    if known is not None:
        return known
    if isinstance(message, Event) and message.stream_id is not None:
        text = f"{message.type_name()}@{message.stream_id}:{message.stream_version}"
    elif isinstance(message, StepDeadlinePassed):
        text = f"{message.type_name()}:{message.step}:{message.due_at.isoformat()}"
    else:
        text = message.type_name()
    LABELS[str(message.message_id)] = _BY_ID[message.message_id] = text
    return text


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
    world.trace.append(label)
    world.apply(choice)
