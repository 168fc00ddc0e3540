"""``sagaworks query``: the read models, through the query handlers only."""

from __future__ import annotations

import argparse
from typing import Any
from uuid import UUID

from readstore.consistency import ConsistencyToken
from workers.cli.output import add_json_flag, emit, fields, table


def register(subparsers: Any) -> None:
    query = subparsers.add_parser("query", help="ask the read models")
    targets = query.add_subparsers(dest="target", required=True, metavar="WHAT")

    order = targets.add_parser("order", help="one order's summary")
    order.add_argument("id", type=UUID, help="the order id")
    order.add_argument("--token", type=ConsistencyToken.parse, help="wait for this write")
    add_json_flag(order)
    order.set_defaults(func=query_order)

    customer = targets.add_parser("customer", help="one customer's profile")
    customer.add_argument("id", type=UUID, help="the customer id")
    customer.add_argument("--token", type=ConsistencyToken.parse, help="wait for this write")
    add_json_flag(customer)
    customer.set_defaults(func=query_customer)

    stock = targets.add_parser("stock", help="stock per SKU: on hand, reserved, available")
    stock.add_argument("sku", nargs="?", help="one SKU (default: every SKU)")
    add_json_flag(stock)
    stock.set_defaults(func=query_stock)

    orders = targets.add_parser("orders", help="a customer's orders, newest first")
    orders.add_argument("--customer", type=UUID, required=True, help="the customer id")
    orders.add_argument("--page", type=int, default=1, help="page number, from 1")
    orders.add_argument("--page-size", type=int, default=20, help="orders per page")
    add_json_flag(orders)
    orders.set_defaults(func=query_orders)


def _connect() -> None:
    from workers.boot import boot  # noqa: PLC0415 -- queries need only MongoDB
    from workers.runtime.settings import Settings  # noqa: PLC0415

    boot(Settings(), embedded_ok=False, broker=_no_broker())


def _no_broker() -> Any:
    from dramatiq.brokers.stub import StubBroker  # noqa: PLC0415

    return StubBroker()


def query_order(args: argparse.Namespace) -> int:
    from readstore.orders import get_order  # noqa: PLC0415

    _connect()
    answer = get_order(args.id, args.token)
    if answer.value is None:
        emit(args, {"order": None, "stale": answer.stale}, lambda _: f"order {args.id}: not found")
        return 1
    view = answer.value
    data = {"order": view.model_dump(mode="json"), "stale": answer.stale}

    def text(_: Any) -> str:
        head = fields(
            [
                ("order", view.order_id),
                ("status", view.status),
                ("reason", view.cancel_reason),
                ("customer", f"{view.customer_name} ({view.customer_id})"),
                ("total", view.total),
                ("placed", view.placed_at),
                ("version", view.version),
                ("stale", "yes: the read model has not caught up" if answer.stale else "no"),
            ]
        )
        lines = table(
            [(ln["sku"], ln["quantity"], ln["unit_price"]) for ln in view.lines],
            ["sku", "quantity", "unit price"],
        )
        return f"{head}\n\n{lines}"

    emit(args, data, text)
    return 0


def query_customer(args: argparse.Namespace) -> int:
    from readstore.customers import get_customer_profile  # noqa: PLC0415

    _connect()
    answer = get_customer_profile(args.id, args.token)
    if answer.value is None:
        emit(
            args,
            {"customer": None, "stale": answer.stale},
            lambda _: f"customer {args.id}: not found",
        )
        return 1
    profile = answer.value
    data = {"customer": profile.model_dump(mode="json"), "stale": answer.stale}
    emit(args, data, lambda _: fields([*profile.model_dump().items(), ("stale", answer.stale)]))
    return 0


def query_orders(args: argparse.Namespace) -> int:
    from readstore.orders import list_customer_orders  # noqa: PLC0415

    _connect()
    page = list_customer_orders(args.customer, args.page, args.page_size)
    rows = [(o.order_id, o.status, o.total, o.placed_at) for o in page.items]
    footer = f"\npage {page.page}" + (f" (more: --page {page.page + 1})" if page.has_more else "")
    emit(
        args,
        page.model_dump(mode="json"),
        lambda _: table(rows, ["order", "status", "total", "placed"]) + footer,
    )
    return 0


def query_stock(args: argparse.Namespace) -> int:
    from readstore.inventory import get_inventory_level, list_inventory_levels  # noqa: PLC0415

    _connect()
    if args.sku:
        level = get_inventory_level(args.sku)
        levels = [level] if level else []
    else:
        levels = list_inventory_levels()
    rows = [(lv.sku, lv.on_hand, lv.reserved, lv.available) for lv in levels]
    emit(
        args,
        [lv.model_dump() for lv in levels],
        lambda _: table(rows, ["sku", "on hand", "reserved", "available"]) if rows else "no stock",
    )
    return 0 if rows or not args.sku else 1
