"""Where messages go on RabbitMQ: each context's command queue and actor (the wire contract)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Endpoint:
    queue_name: str
    actor_name: str


#: A command of context ``c`` is sent to ``COMMAND_ENDPOINTS[c]``.
COMMAND_ENDPOINTS: dict[str, Endpoint] = {
    "customers": Endpoint("customers.commands", "handle_customer_command"),
    "orders": Endpoint("orders.commands", "handle_order_command"),
    "inventory": Endpoint("inventory.commands", "handle_inventory_command"),
    "payments": Endpoint("payments.commands", "handle_payment_command"),
}


def command_endpoint(context: str) -> Endpoint:
    try:
        return COMMAND_ENDPOINTS[context]
    except KeyError:
        raise LookupError(f"no command queue for context {context!r}") from None
