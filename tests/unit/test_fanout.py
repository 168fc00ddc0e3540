"""The shared envelope of a fanned-out event, and work that waits for publisher confirms."""

from __future__ import annotations

import uuid
from typing import Any

import dramatiq
import pytest
from pymongo import UpdateOne

from messages import encode
from tests.support import order_placed, place_order
from workers.runtime import confirms, fanout
from workers.write import writebehind


def shared(queues: dict[str, str]) -> dramatiq.Message[Any]:
    event = encode(order_placed(place_order(uuid.uuid4())))
    return fanout.shared_envelope("p.sagaworks.events", "OrderPlaced", event, queues)


def test_shared_envelope_becomes_each_queues_own_envelope():
    # Given one envelope for two subscriber queues
    message = shared({"p.projections.a": "project_a", "p.sagas.b": "run_b"})

    # When each queue's consumer reads it
    a = dramatiq.Message.decode(fanout.as_delivered(message.encode(), "p.projections.a"))
    b = dramatiq.Message.decode(fanout.as_delivered(message.encode(), "p.sagas.b"))

    # Then each is the envelope a copy of its own would have been
    assert (a.queue_name, a.actor_name) == ("p.projections.a", "project_a")
    assert (b.queue_name, b.actor_name) == ("p.sagas.b", "run_b")
    assert a.message_id == str(uuid.uuid5(uuid.UUID(message.message_id), "project_a"))
    assert a.args == message.args and fanout.OPTION not in a.options


@pytest.mark.parametrize("body", [b"not json", b'{"queue_name": "q"}'])
def test_body_that_is_not_a_shared_envelope_is_delivered_unchanged(body):
    # Given a body that is not a shared envelope (or not an envelope at all)
    # When a consumer reads it
    # Then it is left for Dramatiq (or the dead-letter path) to judge
    assert fanout.as_delivered(body, "p.projections.a") == body


def test_shared_envelope_read_by_a_queue_it_does_not_name_is_unchanged():
    # Given an envelope for one queue
    body = shared({"p.projections.a": "project_a"}).encode()

    # When another queue reads it
    # Then it is not made that queue's
    assert fanout.as_delivered(body, "p.projections.z") == body


class FakeChannel:
    """A confirm channel whose confirms arrive, or are refused, on ``wait``."""

    def __init__(self, refuse: bool = False) -> None:
        self.refuse, self.sent = refuse, 0

    def publish(self, *_: Any) -> None:
        self.sent += 1

    def wait(self) -> None:
        if self.refuse:
            raise dramatiq.errors.ConnectionClosed(RuntimeError("nack"))


def test_write_behind_mark_waits_for_the_confirms(monkeypatch):
    # Given the write-behind's batch, and a block with a publish awaiting its confirm
    added: list[UpdateOne] = []
    monkeypatch.setattr(writebehind.WRITE_BEHIND, "_add", lambda _c, u: added.append(u))
    mark = UpdateOne({"_id": "c"}, {"$set": {"sent": True}})

    with confirms.pipelined(FakeChannel) as pipeline:  # type: ignore[arg-type]
        pipeline.publish("x", "k", b"{}", None)
        # When a mark is added before the confirms are in
        writebehind.WRITE_BEHIND.add(None, mark)  # type: ignore[arg-type]
        # Then it is held back
        assert added == []

    # And joins the batch once they are
    assert added == [mark]


def test_write_behind_mark_is_dropped_when_a_publish_is_refused(monkeypatch):
    # Given a block whose publish will be refused, and a mark added in it
    added: list[UpdateOne] = []
    monkeypatch.setattr(writebehind.WRITE_BEHIND, "_add", lambda _c, u: added.append(u))

    def refused_block() -> None:
        with confirms.pipelined(lambda: FakeChannel(refuse=True)) as pipeline:  # type: ignore[arg-type,return-value]
            pipeline.publish("x", "k", b"{}", None)
            writebehind.WRITE_BEHIND.add(None, UpdateOne({}, {}))  # type: ignore[arg-type]

    # When the block ends
    with pytest.raises(dramatiq.errors.ConnectionClosed):
        refused_block()

    # Then the mark was never added: the redelivery sends again and marks then
    assert added == []
