"""An order's all-or-nothing stock reservation across SKU streams (``Inventory``).

A reservation spans several SKU streams, and the event store appends to one stream at a
time (no multi-document transactions are assumed). Holds are taken in SKU order, each
appended at the SKU stream's expected version: two orders racing for the last unit collide
on the version, one wins and the other re-reads an empty shelf, so available stock never
goes negative. An order's hold and its release on a SKU are committed under ids derived
from the order and the SKU: the event store's unique ``(stream, command)`` index admits at
most one of each, so the SKU's state is three counters, the same on day 1,000 as on day 1.

The order-level outcome is decided on the order's own ``reservation-<order id>`` stream,
and it is *claimed there before anything is given back*: with every SKU held, the handler
appends ``StockReserved``; on a shortage it appends ``StockReservationFailed`` and then
releases what it held; ``ReleaseStock`` appends ``StockReleased`` first, then releases.
Executions that race (a redelivery, a compensation overtaking its reservation) collide on
the reservation stream's version: a reservation that loses adopts the winner's outcome and
gives back what it held if that is "failed" or "released"; a release that loses decides
again on what won, so a release always ends in ``StockReleased`` (or the failure that held
nothing). Committing needs no SKU write: committed stock is stock held for good, so a
SKU's available stock is ``added - held + released``.
"""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from messages import Command, Event, caused_by
from messages.errors import CommandRejected, ConcurrencyError
from messages.inventory import (
    CommitStock,
    ReleaseStock,
    ReserveStock,
    StockCommitted,
    StockLine,
    StockReleased,
    StockReservationFailed,
    StockReserved,
    merge_lines,
    reservation_stream,
    sku_stream,
)
from readstore.eventlog import Commit
from workers.contexts.holds import reserve_at_once
from workers.contexts.stock import Fate, Reservation, Sku, acting_as, hold_id, release_id
from workers.write.cache import CACHE
from workers.write.commands import Session
from workers.write.eventstore import DuplicateCommand, EventStore
from workers.write.outbox import dispatch


# -- the reservation: several SKU streams, one decision ------------------------------------
class Inventory:
    """Runs the reservation commands against the event store (see the module docstring)."""

    def __init__(
        self,
        store: EventStore,
        attempts: int = 5,
        publish: Callable[[Commit, EventStore], None] = dispatch,
    ) -> None:
        self.store = store
        self.attempts = attempts
        self.publish = publish
        self.session = Session(store)
        self._reservation_commits: list[Commit] = []

    def reserve(self, command: ReserveStock) -> str:
        lines = merge_lines(command.lines)
        if reserve_at_once(self.store, command, lines, self.publish):
            return "reserved"
        reservation = self._load(command.order_id, lines)
        if reservation.status != "new":
            return self._adopt(reservation, command, lines)
        held, short = self._hold_all(command, lines)
        event: Event
        if short:
            event = caused_by(
                StockReservationFailed, command, order_id=command.order_id, short=short
            )
        else:
            event = caused_by(StockReserved, command, order_id=command.order_id, lines=lines)
        return self._decide(reservation, event, command, lines, held)

    def release(self, command: ReleaseStock) -> str:
        """Claim "released" at the reservation's version, re-deciding after every race."""
        lines = merge_lines(command.lines)
        for _ in range(self.attempts):
            reservation = self._load(command.order_id, lines)
            if reservation.status == "committed":
                raise CommandRejected(f"order {command.order_id}: stock is committed")
            if reservation.status not in ("new", "reserved"):
                return self._adopt(reservation, command, lines)
            released = caused_by(
                StockReleased,
                command,
                order_id=command.order_id,
                lines=lines,
                reason=command.reason,
            )
            # Reserved: every line is held. New: a reservation in flight adopts "released"
            # and gives back what it held; what a crashed one held is looked up.
            held = {ln.sku for ln in lines} if reservation.status == "reserved" else None
            if self._claim(reservation, released, command):
                self._settle("released", command, lines, held)
                return "released"
        raise ConcurrencyError(f"reservation of {command.order_id}: still conflicting")

    def commit(self, command: CommitStock) -> str:
        """Claim "committed" on the reserved reservation (cached, checked by the append)."""
        cached = True
        for _ in range(self.attempts):
            reservation = self._load(command.order_id, (), cached=cached)
            cached = False
            if reservation.status == "reserved":
                committed = caused_by(
                    StockCommitted, command, order_id=command.order_id, lines=reservation.lines
                )
                if self._claim(reservation, committed, command):
                    return "committed"
            elif self.session.used_cache:
                continue  # decided on the cached state: look at the stream
            elif reservation.status == "committed":
                return self._adopt(reservation, command, ())
            else:
                raise CommandRejected(f"order {command.order_id}: reservation {reservation.status}")
        raise ConcurrencyError(f"reservation of {command.order_id}: still conflicting")

    # -- steps ---------------------------------------------------------------------------------
    def _load(
        self, order_id: UUID, lines: tuple[StockLine, ...], cached: bool = False
    ) -> Reservation:
        """The reservation, with the SKU streams of ``lines`` read along (from their snapshots);
        ``cached``: the reservation may come from the cache (the append checks it)."""
        stream = reservation_stream(order_id)
        self.session = Session(self.store, CACHE, frozenset({stream}), fresh=not cached)
        self.session.prefetch([stream, *(sku_stream(ln.sku) for ln in lines)])
        self._reservation_commits = list(self.session.prefetched.get(stream, []))
        return self.session.load(Reservation, stream)

    def _hold_all(
        self, command: ReserveStock, lines: tuple[StockLine, ...]
    ) -> tuple[set[str], tuple[str, ...]]:
        """Hold each line in SKU order until one is short; then only look: the SKUs short."""
        held: set[str] = set()
        short: list[str] = []
        for line in lines:
            if short:
                if self._sku(line.sku).available < line.quantity:
                    short.append(line.sku)
            elif self._hold(line, command) == "held":
                held.add(line.sku)
            else:
                short.append(line.sku)
        return held, tuple(short)

    def _claim(self, reservation: Reservation, event: Event, command: Command) -> bool:
        """Append ``event`` at the reservation's version; ``False`` if another writer came first."""
        try:
            commit = self.store.append(reservation.stream_id, reservation.version, [event], command)
        except DuplicateCommand as dup:
            self.publish(dup.commit, self.store)
            return True
        except ConcurrencyError:
            self.session.forget(reservation.stream_id)
            return False
        self.publish(commit, self.store)
        self.session.forget(reservation.stream_id)  # its next command reads the outcome
        return True

    def _decide(
        self,
        reservation: Reservation,
        event: Event,
        command: Command,
        lines: tuple[StockLine, ...],
        held: set[str],
    ) -> str:
        """Claim the outcome at the reservation's version; a loser adopts the winner's."""
        if self._claim(reservation, event, command):
            status = _status_after(event)
            self._settle(status, command, lines, held)
            return status
        stream = reservation.stream_id
        commits = self.store.load(stream)
        winner = Reservation.from_commits(stream, commits)
        return self._adopt(winner, command, lines, commits, held)

    def _adopt(
        self,
        reservation: Reservation,
        command: Command,
        lines: tuple[StockLine, ...],
        commits: list[Commit] | None = None,
        held: set[str] | None = None,
    ) -> str:
        """Bring the SKUs in line with a decided reservation; re-send its commits (consumers
        drop what they have seen)."""
        for commit in commits if commits is not None else self._reservation_commits:
            if not commit.dispatched:
                self.publish(commit, self.store)
        self._settle(reservation.status, command, lines, held)
        return reservation.status

    def _settle(
        self, status: str, command: Command, lines: tuple[StockLine, ...], held: set[str] | None
    ) -> None:
        """A failed or released reservation holds nothing: give back each line it holds.

        ``held`` names the SKUs known to be held; ``None``: look each hold up (rare: a
        release racing a reservation, or a reservation that crashed half way).
        """
        if status not in ("failed", "released"):
            return
        order_id: UUID = command.order_id  # type: ignore[attr-defined]
        for line in lines:
            if held is not None and line.sku not in held:
                continue
            if held is None and not self._holds(order_id, line.sku):
                continue
            action = acting_as(command, release_id(order_id, line.sku))
            self._on_sku(line.sku, action, _releaser(line, order_id, action))

    def _holds(self, order_id: UUID, sku: str) -> bool:
        return self.store.commit_for(sku_stream(sku), str(hold_id(order_id, sku))) is not None

    # -- one SKU stream ----------------------------------------------------------------------
    def _sku(self, sku: str) -> Sku:
        """The SKU from its snapshot and the commits after it: prefetched the first time,
        read afresh after that (a conflict means another writer moved it)."""
        return self.session.load(Sku, sku_stream(sku))

    def _hold(self, line: StockLine, command: ReserveStock) -> Fate:
        action = acting_as(command, hold_id(command.order_id, line.sku))
        fate = self._on_sku(line.sku, action, _holder(line, command.order_id, action))
        if fate == "short" and self._holds(command.order_id, line.sku):
            return "held"  # held by an earlier delivery of this reservation
        return fate

    def _on_sku(self, sku_name: str, command: Command, decide: Callable[[Sku], Fate]) -> Fate:
        """Decide on one SKU stream and append at its version, re-reading on a conflict.

        ``command``'s id is the order's hold or release on this SKU: a second one is a
        ``DuplicateCommand``, the first one's fate.
        """
        for _ in range(self.attempts):
            sku = self._sku(sku_name)
            fate = decide(sku)
            if not sku.changes:
                return fate
            try:
                commit = self.store.append(sku.stream_id, sku.version, sku.changes, command)
            except DuplicateCommand as dup:
                self.publish(dup.commit, self.store)
                return "held"
            except ConcurrencyError:
                continue
            self.publish(commit, self.store)
            self.session.committed(sku, commit)
            return fate
        raise ConcurrencyError(f"{sku_stream(sku_name)}: still conflicting after {self.attempts}")


def _holder(line: StockLine, order_id: UUID, cause: Command) -> Callable[[Sku], Fate]:
    return lambda sku: sku.hold(line, order_id, cause)


def _releaser(line: StockLine, order_id: UUID, cause: Command) -> Callable[[Sku], Fate]:
    def release(sku: Sku) -> Fate:
        sku.release(line, order_id, cause)
        return "held"  # what was held is given back; the fate is not asked for

    return release


def _status_after(event: Event) -> str:
    return {
        StockReserved: "reserved",
        StockReservationFailed: "failed",
        StockReleased: "released",
        StockCommitted: "committed",
    }[type(event)]
