"""One order's world for the saga exploration: stores, messages in flight, a budget of faults.

The world runs what the exploration chooses (``choices``) on the real saga runner and the
real deciders: ``deliver`` a message, ``race`` two (one overtaken between its read and its
write), ``pass_time`` and ``sweep`` (the sweeper fires a deadline that has come, and the
world checks the step lasted its time). ``World.key`` is what its future depends on, so
explorations can count orderings without walking twice the same world; ``World.finish``
lets time pass until the saga ends and checks the invariants, a stall included.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from messages import Command, Message
from messages.customers import RegisterCustomer
from messages.errors import CommandRejected, ConcurrencyError
from messages.inventory import AddStock, CommitStock, ReleaseStock, ReserveStock
from messages.orders import OrderLine, PlaceOrder
from sagas.fulfilment import HANDLES
from sagas.outbox import deadline_passed
from sagas.runner import Runner, SagaNotStarted
from sagas.state import TERMINAL
from sagas.store import SagaRecord
from workers.contexts import orders as _orders  # noqa: F401 -- registers the order handlers
from workers.contexts.inventory import Inventory
from workers.workloads.exploration.invariants import violations
from workers.workloads.exploration.memory import _EPOCH, MemoryEventStore, MemorySagaStore
from workers.workloads.exploration.model import (
    ADDRESS,
    LABELS,
    STEP_SECONDS,
    TICK,
    Budget,
    Delivery,
    Scenario,
    SendFailed,
    label,
)
from workers.write.commands import execute


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
    #: Ticks of the clock passed (time passing is a perturbation: ``TICK`` each).
    clock: int = 0
    #: When the saga entered its current step, as the world saw it (not as the saga says).
    entered: datetime | None = None
    #: Deadlines already sent by the sweeper, by (step, due time).
    fired: frozenset[str] = frozenset()
    #: Steps cut short: a deadline the sweeper fired before the step had lasted its time.
    timing: list[str] = field(default_factory=list)

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
            timing=list(self.timing),
        )

    # -- choices -------------------------------------------------------------------------
    # -- the system --------------------------------------------------------------------------
    def deliver(self, delivery: Delivery) -> None:
        target, message = delivery
        try:
            if target == "saga":
                self._saga(message)
            else:
                self._context(message)
        except (SendFailed, SagaNotStarted, ConcurrencyError):
            self.inflight.append(delivery)  # Dramatiq retries it later
            return
        except CommandRejected as exc:
            self.rejected.append(f"{message.type_name()}: {exc}")
        self.delivered.append(delivery)
        self.collect()

    def race(self, first: int, second: int) -> None:
        """Deliver ``first``; at its first write, ``second`` is delivered whole (it read
        before, so its write meets a store that moved: the race of two workers)."""
        overtaking = self.inflight[second]
        delivery = self.inflight.pop(first)
        self.inflight.remove(overtaking)
        fired = False

        def overtake() -> None:
            nonlocal fired
            if not fired:
                fired = True
                self.deliver(overtaking)

        with self._before_writes(overtake):
            self.deliver(delivery)
        if not fired:
            self.deliver(overtaking)  # ``first`` wrote nothing: they simply ran in turn

    @contextmanager
    def _before_writes(self, hook: Callable[[], None]) -> Iterator[None]:
        self.events.before_write = self.sagas.before_write = hook
        try:
            yield
        finally:
            self.events.before_write = self.sagas.before_write = None

    def now(self) -> datetime:
        """The clock: ticks passed, plus the saga's version in ms (the same history gives the
        same deadlines; a step entered again gets a new one)."""
        record = self.sagas.load(str(self.order.order_id))
        version = record.version if record is not None else 0
        return _EPOCH + self.clock * TICK + timedelta(milliseconds=version)

    def _saga(self, message: Message) -> None:
        before = self.sagas.load(str(self.order.order_id))
        if before is not None and str(message.message_id) not in before.handled:
            self.covered.add((before.state.status.value, message.type_name()))
        now = self.now()
        try:
            Runner(self.sagas, self._send, self.sagas.forget, STEP_SECONDS, 3).run(message, now)
        finally:  # a failed send comes after the save: the saga is in its new step all the same
            after = self.sagas.load(str(self.order.order_id))
            if after is not None and _step_of(after) != (_step_of(before) if before else None):
                self.entered = now

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
        """The outbox: every event committed since last time, to the saga if it takes it,
        stamped with the world's clock (the time it occurred in this world)."""
        for commit in self.events.appended[self.seen :]:
            for event in commit.events:
                label(event)
                if isinstance(event, HANDLES):
                    stamped = event.model_copy(update={"occurred_at": self.now()})
                    self.inflight.append(("saga", stamped))
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
            (self.clock, self.entered, self.fired, tuple(self.timing)),
        )

    def running(self) -> bool:
        record = self.sagas.load(str(self.order.order_id))
        return record is not None and record.state.status not in TERMINAL

    def due(self) -> SagaRecord | None:
        """The saga, when the sweeper would fire its deadline now (due, not yet sent)."""
        record = self.sagas.load(str(self.order.order_id))
        if record is None or record.state.status in TERMINAL or record.state.deadline is None:
            return None
        if record.state.deadline > self.now() or _step_of(record) in self.fired:
            return None
        return record

    def pass_time(self) -> None:
        """Time passes beyond any step's deadline; the sweeper's pass follows."""
        self.clock += 1
        self.sweep()

    def sweep(self) -> None:
        """The sweeper's pass: the deadline that has come is sent (and checked: the step
        must have lasted its time, as the world measured it, before it is cut short)."""
        record = self.due()
        if record is None:
            return
        self.fired |= {_step_of(record)}
        lasted = (self.now() - self.entered).total_seconds() if self.entered else 0.0
        if lasted < STEP_SECONDS:
            self.timing.append(
                f"{record.state.status} timed out {lasted:.3f} s after the saga entered it"
                f" (its deadline is {STEP_SECONDS} s)"
            )
        deadline = deadline_passed(record.state)
        label(deadline)
        self.inflight.append(("saga", deadline))

    def finish(self) -> list[str]:
        """Let time pass and the sweeper fire what is left (every message delivered), then
        check the invariants. Nothing is lost in this world: a saga still running when
        every message is delivered waits on nothing but its deadline, and that is a stall."""
        record = self.sagas.load(str(self.order.order_id))
        if self.running() and record is not None:
            self.timing.append(f"saga stalled in {record.state.status} with nothing in flight")
        for _ in range(6):
            while self.inflight:
                self.deliver(self.inflight.pop(0))
            if not self.running():
                break
            self.pass_time()
        return violations(self) + self.timing


def delivery_id(delivery: Delivery) -> tuple[str, str]:
    return delivery[0], str(delivery[1].message_id)


def _step_of(record: SagaRecord) -> str:
    """The saga's step as the sweeper sees it: its state and that state's deadline."""
    deadline = record.state.deadline
    return f"{record.state.status}:{deadline.isoformat() if deadline else '-'}"
