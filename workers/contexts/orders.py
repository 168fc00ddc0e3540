"""The order context: the ``Order`` aggregate, its business rules and its command actor."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID

from messages import Message, caused_by
from messages.customers import customer_stream
from messages.errors import CommandRejected
from messages.orders import (
    CancelOrder,
    ConfirmOrder,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    PlaceOrder,
    order_total,
)
from workers.contexts.customers import Customer
from workers.runtime.broker import message_actor
from workers.runtime.routing import command_endpoint
from workers.write.aggregates import Aggregate
from workers.write.commands import CommandResult, Session, handle, handles

ENDPOINT = command_endpoint("orders")


class Order(Aggregate):
    stream_type = "order"
    SNAPSHOT_EVERY = 0  # an order has a handful of events: reading them beats a snapshot lookup

    status: str = "new"
    customer_id: UUID | None = None
    total: Decimal = Decimal("0")

    def place(self, command: PlaceOrder, customer: Customer) -> None:
        if self.exists:
            raise CommandRejected(f"order {command.order_id} was already placed")
        if not customer.exists:
            raise CommandRejected(f"unknown customer {command.customer_id}")
        if not command.lines:
            raise CommandRejected("an order needs at least one line")
        self.record(
            caused_by(
                OrderPlaced,
                command,
                order_id=command.order_id,
                customer_id=command.customer_id,
                customer_name=customer.name,
                lines=command.lines,
                shipping_address=command.shipping_address,
                total=order_total(command.lines),
                payment_method=command.payment_method,
            )
        )

    def confirm(self, command: ConfirmOrder) -> None:
        self._require_placed(command.order_id)
        if self.status == "confirmed":
            return  # confirming twice is a no-op
        if self.status == "cancelled":
            # A cancellation won the race against the saga's confirmation: the saga learns it
            # from ``OrderCancelled`` and compensates; refusing here would only dead-letter.
            return
        self.record(caused_by(OrderConfirmed, command, **self._keys(), total=self.total))

    def cancel(self, command: CancelOrder) -> None:
        self._require_placed(command.order_id)
        if self.status == "cancelled":
            return  # cancelling twice is a no-op
        if self.status == "confirmed":
            raise CommandRejected(f"order {command.order_id} is confirmed; it cannot be cancelled")
        self.record(
            caused_by(
                OrderCancelled, command, **self._keys(), reason=command.reason, total=self.total
            )
        )

    def _require_placed(self, order_id: UUID) -> None:
        if not self.exists:
            raise CommandRejected(f"unknown order {order_id}")

    def _keys(self) -> dict[str, UUID | None]:
        return {
            "order_id": UUID(self.stream_id.removeprefix("order-")),
            "customer_id": self.customer_id,
        }

    def when_OrderPlaced(self, event: OrderPlaced) -> None:
        self.status, self.customer_id, self.total = "pending", event.customer_id, event.total

    def when_OrderConfirmed(self, _: OrderConfirmed) -> None:
        self.status = "confirmed"

    def when_OrderCancelled(self, _: OrderCancelled) -> None:
        self.status = "cancelled"


def _customer_of(command: PlaceOrder) -> list[str]:
    return [customer_stream(command.customer_id)]


@handles(PlaceOrder, Order, related=_customer_of, creates=True)
def place_order(order: Order, command: PlaceOrder, session: Session) -> None:
    order.place(command, session.load(Customer, customer_stream(command.customer_id)))


@handles(ConfirmOrder, Order)
def confirm_order(order: Order, command: ConfirmOrder, _: Session) -> None:
    order.confirm(command)


@handles(CancelOrder, Order)
def cancel_order(order: Order, command: CancelOrder, _: Session) -> None:
    order.cancel(command)


@message_actor(queue_name=ENDPOINT.queue_name, actor_name=ENDPOINT.actor_name)
def handle_order_command(message: Message) -> CommandResult:
    """Order commands: ``PlaceOrder``, ``ConfirmOrder``, ``CancelOrder``."""
    return handle(message, "orders")
