"""The event store: atomic commits at an expected version, one commit per command."""

from __future__ import annotations

import threading
import uuid

import pytest

from messages.customers import CustomerRegistered, RegisterCustomer
from messages.errors import CommandRejected, ConcurrencyError
from readstore.eventlog import read_stream, stream_version
from workers.write.commands import execute
from workers.write.eventstore import DuplicateCommand, EventStore


def registered(command: RegisterCustomer) -> CustomerRegistered:
    return CustomerRegistered(
        customer_id=command.customer_id,
        full_name=command.name,
        email=command.email,
        payment_limit=command.payment_limit,
        marketing_opt_in=False,
    )


def test_two_appends_at_one_version_exactly_one_wins(database):
    # Given an empty stream and eight writers that all read version 0
    store = EventStore(database)
    store.ensure_indexes()
    command = RegisterCustomer(customer_id=uuid.uuid4(), name="A", email="a@example.com")
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def append() -> None:
        barrier.wait()
        try:
            store.append("customer-x", 0, [registered(command)])
            outcomes.append("won")
        except ConcurrencyError:
            outcomes.append("conflict")

    # When they append at the same moment
    threads = [threading.Thread(target=append) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # Then exactly one commit exists, and every other writer was told of the conflict
    assert sorted(outcomes) == ["conflict"] * 7 + ["won"]
    assert stream_version(database, "customer-x") == 1


def test_the_same_command_cannot_commit_twice(database):
    # Given a committed command
    store = EventStore(database)
    store.ensure_indexes()
    command = RegisterCustomer(customer_id=uuid.uuid4(), name="A", email="a@example.com")
    first = store.append(command.stream_id(), 0, [registered(command)], command)

    # When the same command tries to append again (even at a later version)
    with pytest.raises(DuplicateCommand) as caught:
        store.append(command.stream_id(), 1, [registered(command)], command)

    # Then the store answers with the first commit
    assert caught.value.commit.id == first.id
    assert len(read_stream(database, command.stream_id())) == 1


def test_a_redelivered_command_is_answered_as_before(stub_broker, database):
    # Given a command handled once
    command = RegisterCustomer(customer_id=uuid.uuid4(), name="A", email="a@example.com")
    first = execute(command, EventStore())

    # When it is handled again
    again = execute(command, EventStore())

    # Then no second commit was made, and the answer is the same token
    assert (first.committed, again.duplicate) == (True, True)
    assert again.token == first.token
    assert stream_version(database, command.stream_id()) == 1


def test_a_business_rule_rejects_a_second_registration(stub_broker, database):
    # Given a registered customer
    customer_id = uuid.uuid4()
    execute(
        RegisterCustomer(customer_id=customer_id, name="A", email="a@example.com"), EventStore()
    )

    # When another command registers the same id
    with pytest.raises(CommandRejected, match="already registered"):
        execute(
            RegisterCustomer(customer_id=customer_id, name="B", email="b@example.com"), EventStore()
        )


def test_append_all_stores_the_commits_before_the_first_collision_and_none_after(database):
    # Given stream b at version 1
    store = EventStore(database)
    store.ensure_indexes()
    commands = [
        RegisterCustomer(customer_id=uuid.uuid4(), name=n, email=f"{n}@example.com") for n in "abc"
    ]
    store.append("customer-b", 0, [registered(commands[1])])

    # When three commits are appended in one call, the second at b's stale version 0
    stored = store.append_all([(f"customer-{c.name}", 0, [registered(c)], c) for c in commands])

    # Then a's commit is stored, b's collided, and c's, after it, was not attempted
    assert [commit.stream_id for commit in stored] == ["customer-a"]
    assert stream_version(database, "customer-a") == 1
    assert stream_version(database, "customer-b") == 1
    assert stream_version(database, "customer-c") == 0
