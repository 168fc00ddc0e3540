"""The customer context: the ``Customer`` aggregate and its command actor."""

from __future__ import annotations

from decimal import Decimal

from messages import Message, caused_by
from messages.customers import CustomerRegistered, RegisterCustomer
from messages.errors import CommandRejected
from workers.runtime.broker import message_actor
from workers.runtime.routing import command_endpoint
from workers.write.aggregates import Aggregate
from workers.write.commands import CommandResult, Session, handle, handles

ENDPOINT = command_endpoint("customers")


class Customer(Aggregate):
    stream_type = "customer"
    SNAPSHOT_EVERY = 0  # one event per customer: a snapshot lookup would cost more than it saves

    name: str = ""
    payment_limit: Decimal = Decimal("0")

    def register(self, command: RegisterCustomer) -> None:
        if self.exists:
            raise CommandRejected(f"customer {command.customer_id} is already registered")
        self.record(
            caused_by(
                CustomerRegistered,
                command,
                customer_id=command.customer_id,
                full_name=command.name,
                email=command.email,
                payment_limit=command.payment_limit,
                marketing_opt_in=command.marketing_opt_in,
            )
        )

    def when_CustomerRegistered(self, event: CustomerRegistered) -> None:
        self.name = event.full_name
        self.payment_limit = event.payment_limit


@handles(RegisterCustomer, Customer)
def register_customer(customer: Customer, command: RegisterCustomer, _: Session) -> None:
    customer.register(command)


@message_actor(queue_name=ENDPOINT.queue_name, actor_name=ENDPOINT.actor_name)
def handle_customer_command(message: Message) -> CommandResult:
    """Customer commands: ``RegisterCustomer``."""
    return handle(message, "customers")
