"""The inventory context: stock per SKU, and each order's all-or-nothing reservation.

A reservation spans several SKU streams, and the event store appends to one stream at a
time (no multi-document transactions are assumed). So each SKU stream records, per order, a
fate that only moves forward: *no hold → held → released*, or *no hold → released*. Holds
are taken in SKU order, each appended at the SKU stream's expected version: two orders
racing for the last unit collide on the version, one wins and the other re-reads an empty
shelf, so available stock never goes negative.

The order-level outcome is decided on the order's own ``reservation-<order id>`` stream,
and it is *claimed there before anything is given back*: with every SKU held, the handler
appends ``StockReserved``; on a shortage it appends ``StockReservationFailed`` and only
then releases the order's SKUs; ``ReleaseStock`` appends ``StockReleased`` first, then
releases. Two executions of the same command (a redelivery, a duplicate, a compensation
racing it) collide on the reservation stream's version, and the loser adopts the winner's
outcome: if it is "failed" or "released", the loser releases too (idempotent: a SKU already
released for the order stays released and refuses a later hold). Committing needs no SKU
write: committed stock is stock held for good, so a SKU's available stock is
``added - held + released``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Literal
from uuid import UUID

import structlog

from messages import Command, Event, Message, caused_by
from messages.errors import CommandRejected, ConcurrencyError, InvalidMessageError
from messages.inventory import (
    AddStock,
    CommitStock,
    ReleaseStock,
    ReserveStock,
    StockAdded,
    StockCommitted,
    StockHeld,
    StockHoldReleased,
    StockLine,
    StockReleased,
    StockReservationFailed,
    StockReserved,
    merge_lines,
    reservation_stream,
    sku_stream,
)
from readstore.eventlog import Commit
from workers.runtime.broker import message_actor
from workers.runtime.routing import command_endpoint
from workers.write.aggregates import Aggregate
from workers.write.commands import CommandResult, Session, handle, handles
from workers.write.eventstore import DuplicateCommand, EventStore
from workers.write.outbox import dispatch

log = structlog.get_logger("sagaworks.inventory")

ENDPOINT = command_endpoint("inventory")
ATTEMPTS = 20

Fate = Literal["held", "short", "released"]


class Sku(Aggregate):
    """Stock of one SKU, and each order's fate on it."""

    stream_type = "sku"

    added: int = 0
    held: int = 0
    released: int = 0
    holds: dict[str, int]
    closed: set[str]

    def __init__(self, stream_id: str) -> None:
        super().__init__(stream_id)
        self.added = 0
        self.held = 0
        self.released = 0
        self.holds: dict[str, int] = {}
        self.closed: set[str] = set()

    @property
    def available(self) -> int:
        return self.added - self.held + self.released

    def fate(self, order_id: UUID, quantity: int) -> Fate:
        key = str(order_id)
        if key in self.closed:
            return "released"
        if key in self.holds:
            return "held"
        return "held" if self.available >= quantity else "short"

    def add(self, command: AddStock) -> None:
        self.record(caused_by(StockAdded, command, sku=command.sku, quantity=command.quantity))

    def hold(self, line: StockLine, order_id: UUID, cause: Message) -> Fate:
        fate = self.fate(order_id, line.quantity)
        if fate == "held" and str(order_id) not in self.holds:
            self.record(
                caused_by(StockHeld, cause, sku=line.sku, order_id=order_id, quantity=line.quantity)
            )
        return fate

    def release(self, sku: str, order_id: UUID, cause: Message) -> None:
        key = str(order_id)
        if key not in self.closed:
            quantity = self.holds.get(key, 0)
            self.record(
                caused_by(StockHoldReleased, cause, sku=sku, order_id=order_id, quantity=quantity)
            )

    def when_StockAdded(self, event: StockAdded) -> None:
        self.added += event.quantity

    def when_StockHeld(self, event: StockHeld) -> None:
        self.held += event.quantity
        self.holds[str(event.order_id)] = event.quantity

    def when_StockHoldReleased(self, event: StockHoldReleased) -> None:
        self.released += event.quantity
        self.holds.pop(str(event.order_id), None)
        self.closed.add(str(event.order_id))


class Reservation(Aggregate):
    """One order's reservation: new, then reserved | failed | released, then committed."""

    stream_type = "reservation"
    SNAPSHOT_EVERY = 0  # a few events per order: reading them beats a snapshot look-up

    status: str = "new"
    lines: tuple[StockLine, ...] = ()

    def __init__(self, stream_id: str) -> None:
        super().__init__(stream_id)
        self.status = "new"
        self.lines: tuple[StockLine, ...] = ()

    def when_StockReserved(self, event: StockReserved) -> None:
        self.status, self.lines = "reserved", event.lines

    def when_StockReservationFailed(self, _: StockReservationFailed) -> None:
        self.status = "failed"

    def when_StockReleased(self, _: StockReleased) -> None:
        self.status = "released"

    def when_StockCommitted(self, _: StockCommitted) -> None:
        self.status = "committed"


@handles(AddStock, Sku)
def add_stock(sku: Sku, command: AddStock, _: Session) -> None:
    sku.add(command)


# -- the reservation: several SKU streams, one decision ------------------------------------
class Inventory:
    """Runs the reservation commands against the event store (see the module docstring)."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.session = Session(store)
        self._reservation_commits: list[Commit] = []

    def reserve(self, command: ReserveStock) -> str:
        lines = merge_lines(command.lines)
        reservation = self._load(command.order_id, lines)
        if reservation.status != "new":
            return self._adopt(reservation, command, lines)
        short = self._hold_all(command, lines)
        if short:
            event: Event = caused_by(
                StockReservationFailed, command, order_id=command.order_id, short=short
            )
        else:
            event = caused_by(StockReserved, command, order_id=command.order_id, lines=lines)
        return self._decide(reservation, event, command, lines)

    def release(self, command: ReleaseStock) -> str:
        lines = merge_lines(command.lines)
        reservation = self._load(command.order_id, lines)
        if reservation.status == "committed":
            raise CommandRejected(f"order {command.order_id}: stock is committed")
        if reservation.status in ("new", "reserved"):
            released = caused_by(
                StockReleased,
                command,
                order_id=command.order_id,
                lines=lines,
                reason=command.reason,
            )
            return self._decide(reservation, released, command, lines)
        return self._adopt(reservation, command, lines)

    def commit(self, command: CommitStock) -> str:
        reservation = self._load(command.order_id, ())
        if reservation.status == "committed":
            return self._adopt(reservation, command, ())
        if reservation.status != "reserved":
            raise CommandRejected(f"order {command.order_id}: reservation {reservation.status}")
        committed = caused_by(
            StockCommitted, command, order_id=command.order_id, lines=reservation.lines
        )
        return self._decide(reservation, committed, command, ())

    # -- steps ---------------------------------------------------------------------------------
    def _load(self, order_id: UUID, lines: tuple[StockLine, ...]) -> Reservation:
        """The reservation, with the SKU streams of ``lines`` read along (from their snapshots)."""
        stream = reservation_stream(order_id)
        self.session = Session(self.store)
        self.session.prefetch([stream, *(sku_stream(ln.sku) for ln in lines)])
        self._reservation_commits = list(self.session.prefetched.get(stream, []))
        return self.session.load(Reservation, stream)

    def _hold_all(self, command: ReserveStock, lines: tuple[StockLine, ...]) -> tuple[str, ...]:
        """Hold each line in SKU order until one is short; then only look: the SKUs short."""
        short: list[str] = []
        for line in lines:
            if short:
                sku = self._sku(line.sku)
                if sku.fate(command.order_id, line.quantity) != "held":
                    short.append(line.sku)
                continue
            fate = self._on_sku(
                line.sku, _derived(command, f"hold {line.sku}"), self._holder(line, command)
            )
            if fate != "held":
                short.append(line.sku)
        return tuple(short)

    def _decide(
        self, reservation: Reservation, event: Event, command: Command, lines: tuple[StockLine, ...]
    ) -> str:
        """Claim the outcome at the reservation's version; a loser adopts the winner's."""
        stream = reservation.stream_id
        try:
            commit = self.store.append(stream, reservation.version, [event], command)
        except (DuplicateCommand, ConcurrencyError):
            commits = self.store.load(stream)
            return self._adopt(Reservation.from_commits(stream, commits), command, lines, commits)
        dispatch(commit, self.store)
        status = _status_after(event)
        self._settle(status, command, lines)
        return status

    def _adopt(
        self,
        reservation: Reservation,
        command: Command,
        lines: tuple[StockLine, ...],
        commits: list[Commit] | None = None,
    ) -> str:
        """Bring the SKUs in line with a decided reservation; re-send what is undispatched."""
        for commit in commits if commits is not None else self._reservation_commits:
            if not commit.dispatched:
                dispatch(commit, self.store)
        self._settle(reservation.status, command, lines)
        return reservation.status

    def _settle(self, status: str, command: Command, lines: tuple[StockLine, ...]) -> None:
        """A failed or released reservation holds nothing: release each of its SKUs."""
        if status in ("failed", "released"):
            for line in lines:
                action = _derived(command, f"release {line.sku}")
                self._on_sku(line.sku, action, _releaser(line, command))

    # -- one SKU stream ----------------------------------------------------------------------
    def _sku(self, sku: str) -> Sku:
        """The SKU from its snapshot and the commits after it: prefetched the first time,
        read afresh after that (a conflict means another writer moved it)."""
        return self.session.load(Sku, sku_stream(sku))

    def _holder(self, line: StockLine, command: ReserveStock) -> Callable[[Sku], Fate]:
        return lambda sku: sku.hold(line, command.order_id, command)

    def _on_sku(self, sku_name: str, command: Command, decide: Callable[[Sku], Fate]) -> Fate:
        """Decide on one SKU stream and append at its version, re-reading on a conflict."""
        for _ in range(ATTEMPTS):
            sku = self._sku(sku_name)
            fate = decide(sku)
            if not sku.changes:
                return fate
            try:
                commit = self.store.append(sku.stream_id, sku.version, sku.changes, command)
            except (DuplicateCommand, ConcurrencyError):
                continue
            dispatch(commit, self.store)
            return fate
        raise ConcurrencyError(f"{sku_stream(sku_name)}: still conflicting after {ATTEMPTS}")


def _releaser(line: StockLine, command: Command) -> Callable[[Sku], Fate]:
    order_id: UUID = command.order_id  # type: ignore[attr-defined]

    def release(sku: Sku) -> Fate:
        sku.release(line.sku, order_id, command)
        return "released"

    return release


def _derived(command: Command, action: str) -> Command:
    """``command`` under an id of its own per SKU action, so each is committed at most once."""
    return command.model_copy(update={"message_id": uuid.uuid5(command.message_id, action)})


def _status_after(event: Event) -> str:
    return {
        StockReserved: "reserved",
        StockReservationFailed: "failed",
        StockReleased: "released",
        StockCommitted: "committed",
    }[type(event)]


def run_inventory_command(message: Message) -> str:
    """Run one inventory command; ``AddStock`` goes through the ordinary command pipeline."""
    inventory = Inventory(EventStore())
    match message:
        case AddStock():
            return str(handle(message, "inventory").token)
        case ReserveStock():
            outcome = inventory.reserve(message)
        case ReleaseStock():
            outcome = inventory.release(message)
        case CommitStock():
            outcome = inventory.commit(message)
        case _:
            raise InvalidMessageError(f"{message.type_name()} is not an inventory command")
    log.info("reservation.handled", command=message.type_name(), outcome=outcome)
    return outcome


@message_actor(queue_name=ENDPOINT.queue_name, actor_name=ENDPOINT.actor_name)
def handle_inventory_command(message: Message) -> CommandResult | str:
    """Inventory commands: ``AddStock``, ``ReserveStock``, ``ReleaseStock``, ``CommitStock``."""
    if isinstance(message, AddStock):
        return handle(message, "inventory")  # its token answers the command's reply_to
    return run_inventory_command(message)
