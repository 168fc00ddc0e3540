"""One contract: the worker's models and the exported JSON Schemas accept exactly the same
messages, on schema-generated messages and on the same messages broken on purpose."""

from __future__ import annotations

import copy
import json
import os
import re
from collections import Counter
from typing import Any

import jsonschema
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from messages import InvalidMessage, decode, registry
from messages.schema import wire_schema

TYPES = sorted(registry.types())
#: Cases per message type (half of them broken); raise it for a longer search.
EXAMPLES = int(os.environ.get("SAGAWORKS_CONTRACT_EXAMPLES", "12"))
ALL = list(HealthCheck)
PHASES = [Phase.explicit, Phase.generate]  # shrinking these documents takes minutes
TALLY: Counter[str] = Counter()
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=4,
)


def _ecma_pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    # JSON Schema patterns are ECMA-262: `$` is the end of the text. Python's `re.search`
    # also lets `$` match before a final newline, so it is read here as `\Z`.
    if isinstance(instance, str) and not re.search(re.sub(r"\$$", r"\\Z", pattern), instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"pattern": _ecma_pattern}
)


def schema_accepts(schema: dict[str, Any], doc: Any) -> bool:
    checker = jsonschema.Draft202012Validator.FORMAT_CHECKER
    return bool(Validator(schema, format_checker=checker).is_valid(doc))


def worker_accepts(doc: Any) -> bool:
    try:
        decode(copy.deepcopy(doc))
    except InvalidMessage:
        return False
    return True


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into ``doc`` (object keys and array indexes), the root excluded."""
    found: list[tuple[Any, ...]] = []
    items = (
        doc.items() if isinstance(doc, dict) else enumerate(doc) if isinstance(doc, list) else ()
    )
    for key, value in items:
        found += [(*prefix, key), *_paths(value, (*prefix, key))]
    return found


@st.composite
def broken(draw: st.DrawFn, valid: st.SearchStrategy[Any]) -> Any:
    """A valid message with one thing changed: a value replaced, a key dropped or added."""
    doc = draw(valid)
    path = draw(st.sampled_from(_paths(doc)))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    action = draw(st.sampled_from(["replace", "drop", "add"]))
    if action == "drop" and isinstance(parent, dict):
        del parent[path[-1]]
    elif action == "add" and isinstance(parent, dict):
        parent[draw(st.text(min_size=1, max_size=6))] = draw(JSON_VALUES)
    elif path[:1] != ("version",):  # an older version is upcast on purpose (docs/contract.md)
        parent[path[-1]] = draw(JSON_VALUES | st.text(max_size=30))
    return doc


@pytest.fixture(scope="module", autouse=True)
def report_tally() -> Any:
    yield
    print(f"\ncontract agreement: {sum(TALLY.values())} cases {dict(sorted(TALLY.items()))}")


@pytest.mark.parametrize("type_name", TYPES)
def test_worker_and_schema_agree_on_generated_and_broken_messages(type_name: str) -> None:
    # Given the exported schema of a message type
    schema = wire_schema(registry.get(type_name))
    valid = from_schema(schema)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=ALL,
        phases=PHASES,
    )
    @given(doc=st.one_of(valid, broken(valid)))
    def agree(doc: Any) -> None:
        # When the worker's models and the schema each judge it
        by_schema, by_worker = schema_accepts(schema, doc), worker_accepts(doc)
        TALLY[f"{'accepted' if by_schema else 'refused'}"] += 1
        # Then they say the same
        assert by_schema == by_worker, json.dumps(doc)[:400]

    agree()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("data", "lines", 0, "unit_price"), 9.99),
        (("data", "lines", 0, "unit_price"), "abc"),
        (("data", "lines", 0, "unit_price"), "9.999"),
        (("data", "lines", 0, "quantity"), "2"),
        (("occurred_at",), "2026-11-22T06:00:00"),
        (("occurred_at",), 1764000000),
        (("message_id",), "6f1c1c1e8a524c389a2e7d1f8f0b7a10"),
    ],
)
def test_what_the_schema_refuses_the_worker_refuses(path: tuple[Any, ...], value: Any) -> None:
    # Given a valid PlaceOrder with one field broken the way a careless publisher would
    schema = wire_schema(registry.get("PlaceOrder"))
    doc = json.loads(json.dumps(PLACE_ORDER))
    target = doc
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    # Then both refuse it
    assert (schema_accepts(schema, doc), worker_accepts(doc)) == (False, False)


def test_a_valid_place_order_is_accepted_by_both() -> None:
    schema = wire_schema(registry.get("PlaceOrder"))
    assert (schema_accepts(schema, PLACE_ORDER), worker_accepts(PLACE_ORDER)) == (True, True)


PLACE_ORDER = {
    "type": "PlaceOrder",
    "version": 1,
    "message_id": "6f1c1c1e-8a52-4c38-9a2e-7d1f8f0b7a10",
    "correlation_id": None,
    "occurred_at": "2026-11-22T06:00:00Z",
    "data": {
        "order_id": "0b6f0b8e-3f1e-4c3a-9a57-0f6f1d2c3b4a",
        "customer_id": "c7d1a9b2-5e4f-4a3b-8c2d-1e0f9a8b7c6d",
        "lines": [{"sku": "SKU-1", "quantity": 2, "unit_price": "9.99"}],
        "shipping_address": {
            "name": "A",
            "street": "1 Main St",
            "city": "Springfield",
            "postal_code": "12345",
            "country": "US",
        },
    },
}
