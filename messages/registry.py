"""The message registry: wire JSON to the right model, by (type, version), through upcasters."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import ValidationError

from messages.base import METADATA_FIELDS, Command, Event, Message

MT = TypeVar("MT", bound=type[Message])
Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class InvalidMessage(ValueError):
    """The message cannot be decoded: not JSON, wrong shape, or fails its schema."""


class UnknownMessageType(InvalidMessage):
    """No model is registered for the message's type (or its version is newer than ours)."""


class Registry:
    """Known message types, their current version and the upcasters of older versions."""

    def __init__(self) -> None:
        self._types: dict[str, type[Message]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}

    def register(self, cls: MT) -> MT:
        name = cls.type_name()
        if name in self._types and self._types[name] is not cls:
            raise ValueError(f"message type {name!r} registered twice")
        self._types[name] = cls
        return cls

    def add_upcaster(self, type_name: str, from_version: int, fn: Upcaster) -> None:
        key = (type_name, from_version)
        if key in self._upcasters:
            raise ValueError(f"upcaster {type_name} v{from_version} registered twice")
        self._upcasters[key] = fn

    def get(self, type_name: str) -> type[Message]:
        try:
            return self._types[type_name]
        except KeyError:
            raise UnknownMessageType(f"unknown message type {type_name!r}") from None

    def types(self) -> Mapping[str, type[Message]]:
        return dict(self._types)

    def commands(self) -> list[type[Command]]:
        return [t for t in self._types.values() if issubclass(t, Command)]

    def events(self) -> list[type[Event]]:
        return [t for t in self._types.values() if issubclass(t, Event)]

    def check(self) -> None:
        """Refuse a registry in which an old version of a type cannot reach the current one."""
        for name, cls in self._types.items():
            missing = [v for v in range(1, cls.VERSION) if (name, v) not in self._upcasters]
            if missing:
                raise ValueError(f"{name} v{cls.VERSION}: no upcaster from version(s) {missing}")
        for name, version in self._upcasters:
            target = self._types.get(name)
            if target is None or version >= target.VERSION:
                raise ValueError(f"upcaster {name} v{version} has no newer model to reach")

    def upcast(self, type_name: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
        cls = self.get(type_name)
        if version > cls.VERSION:
            raise UnknownMessageType(f"{type_name} v{version} is newer than v{cls.VERSION}")
        while version < cls.VERSION:
            fn = self._upcasters.get((type_name, version))
            if fn is None:
                raise UnknownMessageType(f"no upcaster for {type_name} v{version}")
            data = fn(dict(data))
            version += 1
        return data

    def decode(self, wire: str | bytes | Mapping[str, Any]) -> Message:
        """The message ``wire`` holds, validated by the rules of its JSON Schema, except that
        an older ``version`` is upcast (lenient on purpose: see ``docs/contract.md``)."""
        doc = _load(wire)
        type_name, version = _head(doc)
        model = self.get(type_name)
        if version > model.VERSION:
            raise UnknownMessageType(f"{type_name} v{version} is newer than v{model.VERSION}")
        fields = self.upcast(type_name, version, _body(doc))
        clash = set(fields) & METADATA_FIELDS
        if clash:
            raise InvalidMessage(f"metadata keys inside 'data': {sorted(clash)}")
        meta = {k: v for k, v in doc.items() if k in METADATA_FIELDS}
        if meta.get("correlation_id") is None:
            meta.pop("correlation_id", None)  # a first message correlates with itself
        try:
            return model.model_validate({**fields, **meta})
        except ValidationError as exc:
            raise InvalidMessage(_summarize(type_name, exc)) from None


#: Keys every message on the wire carries (a publisher never leaves the id to the worker).
REQUIRED_KEYS = ("type", "version", "message_id", "occurred_at", "data")


def _head(doc: dict[str, Any]) -> tuple[str, int]:
    type_name, version = doc.get("type"), doc.get("version")
    if not isinstance(type_name, str) or isinstance(version, bool) or not isinstance(version, int):
        raise InvalidMessage("message needs a string 'type' and an integer 'version'")
    return type_name, version


def _body(doc: dict[str, Any]) -> dict[str, Any]:
    """The ``data`` of a document whose top level has every key it needs and no other."""
    missing = [key for key in REQUIRED_KEYS if key not in doc]
    if missing:
        raise InvalidMessage(f"message lacks required keys: {missing}")
    unexpected = set(doc) - METADATA_FIELDS - set(REQUIRED_KEYS)
    if unexpected:
        raise InvalidMessage(f"unexpected top-level keys: {sorted(unexpected)}")
    if not isinstance(doc["data"], dict):
        raise InvalidMessage("message 'data' must be an object")
    return dict(doc["data"])


def _load(wire: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    if isinstance(wire, Mapping):
        return dict(wire)
    try:
        doc = json.loads(wire)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidMessage(f"message is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidMessage("message must be a JSON object")
    return doc


def _summarize(type_name: str, exc: ValidationError) -> str:
    parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()[:5]]
    return f"{type_name} failed validation: " + "; ".join(parts)


def encode(message: Message) -> dict[str, Any]:
    """The wire document of ``message`` (JSON-compatible)."""
    doc: dict[str, Any] = {
        "type": message.type_name(),
        "version": message.VERSION,
        "message_id": str(message.message_id),
        "correlation_id": str(message.correlation),
        "causation_id": str(message.causation_id) if message.causation_id else None,
        "occurred_at": message.occurred_at.isoformat().replace("+00:00", "Z"),
        "data": message.data(),
    }
    if isinstance(message, Event) and message.stream_id is not None:
        doc["stream_id"] = message.stream_id
        doc["stream_version"] = message.stream_version
    return doc


registry = Registry()
decode = registry.decode


def as_current(wire: str | bytes | Mapping[str, Any]) -> dict[str, Any]:
    """The wire document of ``wire`` read as its type's current version (upcast if older)."""
    return encode(decode(wire))


def upcaster(type_name: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
    """Register ``fn`` to turn ``type_name`` data at ``from_version`` into the next version."""

    def register(fn: Upcaster) -> Upcaster:
        registry.add_upcaster(type_name, from_version, fn)
        return fn

    return register
