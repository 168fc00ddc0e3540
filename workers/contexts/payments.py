"""The payment context: one ``Payment`` per order, charged at most once, through a gateway.

The gateway is a protocol a real payment provider's client can implement; the
``SimulatedGateway`` declines deterministically (a ``declined…`` payment method, an amount
over the customer's limit) and injects latency, slowness (``slow…`` methods) and transient
failures when configured, for tests and the demo. Every call carries the order id as the
idempotency key a real gateway would use to refuse a second charge.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol
from uuid import UUID

from messages import Message, caused_by
from messages.customers import customer_stream
from messages.errors import TransientError
from messages.payments import (
    ChargePayment,
    PaymentCharged,
    PaymentDeclined,
    PaymentRefunded,
    RefundPayment,
)
from workers.contexts.customers import Customer
from workers.runtime.broker import message_actor
from workers.runtime.routing import command_endpoint
from workers.runtime.settings import Settings
from workers.write.aggregates import Aggregate
from workers.write.commands import CommandResult, Session, handle, handles

ENDPOINT = command_endpoint("payments")


@dataclass(frozen=True)
class ChargeRequest:
    order_id: UUID
    amount: Decimal
    payment_method: str
    limit: Decimal


@dataclass(frozen=True)
class GatewayAnswer:
    approved: bool
    reference: str = ""
    reason: str = ""


class PaymentGateway(Protocol):
    """What the payment context needs from a payment provider."""

    def charge(self, request: ChargeRequest) -> GatewayAnswer:
        """Take the money, or decline; raises ``TransientError`` when it may work later."""
        ...

    def refund(self, order_id: UUID, amount: Decimal, reference: str) -> str:
        """Give a charge back; the refund's reference."""
        ...


class SimulatedGateway:
    """A deterministic stand-in for a payment provider, with injectable faults."""

    def __init__(
        self,
        latency_seconds: float = 0.0,
        slow_seconds: float = 5.0,
        failure_rate: float = 0.0,
        seed: int | None = None,
    ) -> None:
        self.latency_seconds = latency_seconds
        self.slow_seconds = slow_seconds
        self.failure_rate = failure_rate
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> SimulatedGateway:
        return cls(
            settings.payment_latency_seconds,
            settings.payment_slow_seconds,
            settings.payment_failure_rate,
        )

    def charge(self, request: ChargeRequest) -> GatewayAnswer:
        self._call(request.payment_method)
        if request.payment_method.startswith("declined"):
            return GatewayAnswer(approved=False, reason="card declined")
        if request.amount > request.limit:
            return GatewayAnswer(approved=False, reason="amount over the customer's limit")
        return GatewayAnswer(approved=True, reference=_reference(request.order_id, "charge"))

    def refund(self, order_id: UUID, amount: Decimal, reference: str) -> str:
        self._call("card")
        return _reference(order_id, "refund")

    def _call(self, method: str) -> None:
        pause = self.slow_seconds if method.startswith("slow") else self.latency_seconds
        if pause:
            time.sleep(pause)
        with self._lock:
            failed = self._random.random() < self.failure_rate
        if failed:
            raise TransientError("payment gateway unavailable (simulated)")


def _reference(order_id: UUID, what: str) -> str:
    return f"sim-{what}-{uuid.uuid5(order_id, what).hex[:12]}"


_gateway: PaymentGateway | None = None


def set_gateway(gateway: PaymentGateway | None) -> None:
    """Use ``gateway`` for every charge in this process (``None``: back to the settings)."""
    global _gateway  # noqa: PLW0603 -- one gateway per process, like the database
    _gateway = gateway


def configure(settings: Settings) -> None:
    """At boot: the simulated gateway, with the faults ``settings`` inject."""
    set_gateway(SimulatedGateway.from_settings(settings))


def get_gateway() -> PaymentGateway:
    global _gateway  # noqa: PLW0603
    if _gateway is None:
        _gateway = SimulatedGateway.from_settings(Settings())
    return _gateway


class Payment(Aggregate):
    """One order's payment: new, then charged or declined; a charge may be refunded."""

    stream_type = "payment"
    SNAPSHOT_EVERY = 0  # a few events per order: reading them beats a snapshot look-up

    status: str = "new"
    amount: Decimal = Decimal("0")
    reference: str = ""

    def __init__(self, stream_id: str) -> None:
        super().__init__(stream_id)
        self.status = "new"
        self.amount = Decimal("0")
        self.reference = ""

    def charge(self, command: ChargePayment, customer: Customer, gateway: PaymentGateway) -> None:
        if self.status != "new":
            return  # a charge is never taken twice; the first answer stands
        request = ChargeRequest(
            command.order_id, command.amount, command.payment_method, customer.payment_limit
        )
        answer = gateway.charge(request)
        keys = {"order_id": command.order_id, "amount": command.amount}
        if answer.approved:
            self.record(caused_by(PaymentCharged, command, **keys, reference=answer.reference))
        else:
            self.record(caused_by(PaymentDeclined, command, **keys, reason=answer.reason))

    def refund(self, command: RefundPayment, gateway: PaymentGateway) -> None:
        if self.status != "charged":
            return  # nothing taken, or given back already
        reference = gateway.refund(command.order_id, self.amount, self.reference)
        self.record(
            caused_by(
                PaymentRefunded,
                command,
                order_id=command.order_id,
                amount=self.amount,
                reference=reference,
            )
        )

    def when_PaymentCharged(self, event: PaymentCharged) -> None:
        self.status, self.amount, self.reference = "charged", event.amount, event.reference

    def when_PaymentDeclined(self, _: PaymentDeclined) -> None:
        self.status = "declined"

    def when_PaymentRefunded(self, _: PaymentRefunded) -> None:
        self.status = "refunded"


def _customer_of(command: ChargePayment) -> list[str]:
    return [customer_stream(command.customer_id)]


@handles(ChargePayment, Payment, related=_customer_of, creates=True)
def charge_payment(payment: Payment, command: ChargePayment, session: Session) -> None:
    customer = session.load(Customer, customer_stream(command.customer_id))
    payment.charge(command, customer, get_gateway())


@handles(RefundPayment, Payment)
def refund_payment(payment: Payment, command: RefundPayment, _: Session) -> None:
    payment.refund(command, get_gateway())


@message_actor(queue_name=ENDPOINT.queue_name, actor_name=ENDPOINT.actor_name)
def handle_payment_command(message: Message) -> CommandResult:
    """Payment commands: ``ChargePayment``, ``RefundPayment``."""
    return handle(message, "payments")
