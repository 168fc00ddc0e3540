"""The query cache: hits while the model is unchanged, misses after an apply, never stale
past a consistency token."""

from __future__ import annotations

import uuid
from decimal import Decimal

from messages.orders import OrderConfirmed, OrderLine, OrderPlaced, order_stream
from readstore.analytics import OrderAnalytics, revenue_by_day
from readstore.cache import query_cache
from readstore.consistency import ConsistencyToken
from readstore.steps import Step
from tests.support import ADDRESS
from workers.write.eventstore import EventStore


def placed_and_confirmed(store: EventStore, amount: str = "10.00") -> list[OrderConfirmed]:
    """An order placed and confirmed in the store; returns its recorded confirmation."""
    order_id, customer_id = uuid.uuid4(), uuid.uuid4()
    line = OrderLine(sku="A", quantity=1, unit_price=Decimal(amount))
    keys = {"order_id": order_id, "customer_id": customer_id}
    placed = OrderPlaced(
        **keys, customer_name="x", lines=(line,), shipping_address=ADDRESS, total=line.amount
    )
    commit = store.append(
        order_stream(order_id), 0, [placed, OrderConfirmed(**keys, total=line.amount)]
    )
    return [e for e in commit.events if isinstance(e, OrderConfirmed)]


class Unbumped(OrderAnalytics):
    """Writes as the projection does, without the counter's bump after it."""

    def touched(self) -> list[Step]:
        return []


def revenue() -> Decimal:
    return sum((r.revenue for r in revenue_by_day().value), Decimal(0))


def test_a_repeated_query_is_served_from_the_cache(database):
    # Given a model with one confirmed order, asked once
    query_cache.clear()
    (event,) = placed_and_confirmed(EventStore(database))
    OrderAnalytics(database).apply(event)
    first = revenue()

    # When the same query is asked again
    second = revenue()

    # Then it hit the cache and answered the same
    assert first == second == Decimal("10.00")
    assert query_cache.stats()["hits"] == 1
    assert query_cache.hit_rate() == 0.5


def test_a_cached_query_is_invalidated_by_the_next_applied_event(database):
    # Given a cached answer
    query_cache.clear()
    store = EventStore(database)
    (event,) = placed_and_confirmed(store)
    OrderAnalytics(database).apply(event)
    assert revenue() == Decimal("10.00")

    # When the next event is applied
    (another,) = placed_and_confirmed(store, "5.00")
    OrderAnalytics(database).apply(another)

    # Then the next query misses and sees it
    assert revenue() == Decimal("15.00")
    assert query_cache.stats()["hits"] == 0


def test_with_a_token_a_cached_answer_is_never_stale(database):
    # Given a cached answer, then a write whose counter bump has not happened yet
    query_cache.clear()
    store = EventStore(database)
    (event,) = placed_and_confirmed(store)
    OrderAnalytics(database).apply(event)
    assert revenue() == Decimal("10.00")
    (another,) = placed_and_confirmed(store, "5.00")
    Unbumped(database).apply(another)  # the write, its bump not landed yet
    token = ConsistencyToken(order_stream(another.order_id), 2)

    # When the query passes that write's token
    answer = revenue_by_day(token=token)

    # Then it is computed afresh, includes the write, and says it is fresh
    assert not answer.stale
    assert sum(r.revenue for r in answer.value) == Decimal("15.00")


def test_a_token_the_model_never_reaches_answers_stale(database):
    # Given a model that has not seen an order
    query_cache.clear()
    token = ConsistencyToken(order_stream(uuid.uuid4()), 2)

    # When a query waits for it, briefly
    from readstore.cache import QueryCache

    cache = QueryCache()
    answer = cache.answer(
        database, "m", "k", lambda: "data", token=token, reached=lambda _: False, timeout=0.05
    )

    # Then it answers with what it has and says it is stale
    assert answer.value == "data"
    assert answer.stale
