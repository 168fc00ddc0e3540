import uuid
from decimal import Decimal

from messages.customers import RegisterCustomer
from messages.orders import Address, OrderLine, PlaceOrder
from readstore.customers import get_customer_profile
from readstore.orders import get_order
from workers.publishing import publish


def test_order_flows_to_read_models(stub_broker, stub_worker):
    cid, oid = uuid.uuid4(), uuid.uuid4()
    publish(RegisterCustomer(customer_id=cid, name="Ada", email="ada@example.com"))
    stub_broker.join("customers.commands")
    stub_worker.join()
    r = publish(
        PlaceOrder(
            order_id=oid,
            customer_id=cid,
            lines=(OrderLine(sku="A", quantity=2, unit_price=Decimal("1.50")),),
            shipping_address=Address(name="a", street="b", city="c", postal_code="1", country="DE"),
        )
    )
    for q in ("orders.commands", "projections.order_summary", "projections.customer_profile"):
        stub_broker.join(q)
    stub_worker.join()
    token = r.wait(1)
    ans = get_order(oid, token)
    print(ans)
    assert ans.value.total == Decimal("3.00")
    print(get_customer_profile(cid))
