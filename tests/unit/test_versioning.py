"""Event versioning: v1 ``CustomerRegistered`` is read as v2 everywhere; gaps refuse to boot."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from messages import Event, decode
from messages.customers import CustomerRegistered, customer_stream
from messages.registry import Registry
from readstore.customers import CustomerProfiles, get_customer_profile
from readstore.eventlog import commit_id, read_stream
from readstore.orders import get_order
from tests.support import place_order, settle
from workers import boot as runtime
from workers.contexts.customers import Customer
from workers.publishing import publish
from workers.write.commands import Session
from workers.write.eventstore import EventStore


def v1_customer_registered(customer_id: uuid.UUID, name: str = "Old Timer") -> dict[str, Any]:
    """The wire document of ``CustomerRegistered`` as version 1 wrote it."""
    return {
        "type": "CustomerRegistered",
        "version": 1,
        "message_id": str(uuid.uuid4()),
        "correlation_id": str(uuid.uuid4()),
        "causation_id": None,
        "occurred_at": "2025-01-02T03:04:05Z",
        "data": {
            "customer_id": str(customer_id),
            "name": name,
            "email": "old@example.com",
            "payment_limit": "500.00",
        },
    }


def store_v1_customer(database: Any, customer_id: uuid.UUID) -> str:
    """Insert a v1 commit raw, as the event store held it before the upgrade."""
    stream = customer_stream(customer_id)
    database["commits"].insert_one(
        {
            "_id": commit_id(stream, 1),
            "stream_id": stream,
            "version_from": 1,
            "version": 1,
            "events": [v1_customer_registered(customer_id)],
            "committed_at": datetime.now(UTC),
            "dispatched": True,
        }
    )
    return stream


class _Gapped(Event):
    VERSION: ClassVar[int] = 3
    value: int


def test_registry_refuses_a_gap_in_an_upcaster_chain():
    # Given a type at v3 with an upcaster from v1 only
    gapped = Registry()
    gapped.register(_Gapped)
    gapped.add_upcaster("_Gapped", 1, lambda data: data)

    # When / Then the check names the missing version
    with pytest.raises(ValueError, match=r"no upcaster from version\(s\) \[2\]"):
        gapped.check()


def test_boot_refuses_to_start_with_a_gap(settings, database, monkeypatch):
    # Given the process registry has a gap
    gapped = Registry()
    gapped.register(_Gapped)
    monkeypatch.setattr(runtime, "registry", gapped)

    # When / Then boot refuses
    with pytest.raises(ValueError, match="_Gapped"):
        runtime.boot(settings, database=database, logging=False)


def test_the_real_registry_has_no_gap():
    # Given / When / Then the shipped contracts pass the boot check
    from messages import registry

    registry.check()


def test_v1_on_the_wire_is_decoded_as_v2():
    # Given a v1 wire document
    customer_id = uuid.uuid4()

    # When it is decoded
    event = decode(v1_customer_registered(customer_id))

    # Then it is the current model, with the renamed and the added field
    assert isinstance(event, CustomerRegistered)
    assert event.full_name == "Old Timer"
    assert event.marketing_opt_in is False


def test_v1_in_the_store_is_read_as_v2_by_the_aggregate(stub_broker, database):
    # Given a customer registered before the upgrade
    customer_id = uuid.uuid4()
    stream = store_v1_customer(database, customer_id)

    # When the aggregate is loaded
    customer = Session(EventStore(database)).load(Customer, stream)

    # Then it saw the v2 event
    assert customer.version == 1
    assert customer.name == "Old Timer"


def test_v1_in_the_store_is_read_as_v2_by_the_projection(stub_broker, database):
    # Given a customer registered before the upgrade
    customer_id = uuid.uuid4()
    stream = store_v1_customer(database, customer_id)

    # When the profile projection applies the stored event
    (event,) = read_stream(database, stream)
    CustomerProfiles(database).apply(event)

    # Then the profile carries the upcast fields
    profile = get_customer_profile(customer_id).value
    assert profile is not None
    assert profile.name == "Old Timer"
    assert profile.marketing_opt_in is False


def test_an_order_of_a_v1_customer_uses_the_upcast_name(stub_broker, stub_worker, database):
    # Given a customer registered before the upgrade
    customer_id = uuid.uuid4()
    store_v1_customer(database, customer_id)

    # When they place an order through the pipeline
    command = place_order(customer_id)
    publish(command)
    settle(stub_broker, stub_worker)

    # Then the order read model shows the name the v1 event carried
    order = get_order(command.order_id).value
    assert order is not None
    assert order.customer_name == "Old Timer"
