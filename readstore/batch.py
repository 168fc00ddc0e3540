"""Applying several events of one projection with one bulk write per collection.

Live delivery applies an event with its steps (``Projection.steps``: the change and new
position of its stream's document, filtered on the position one version before; for a
projection summing several streams, the steps on the sum's document too). When several
events of a projection wait at once, ``apply_batch`` sends all their steps as one ordered
``bulk_write`` per collection, in stream and version order, so consecutive versions of one
document in a batch apply in turn (a batch of new documents alone: one insert, see
``readstore.steps.insert_new``). A step that misses stops the bulk at that event (the
store says which step: see ``readstore.steps``); the bulk goes on from the next event, and
the event that missed goes through ``apply_one`` on its own (gap healing, parking,
finishing an interrupted apply). Nothing is read when every step matches. An event that
cannot be placed, fails on its own, or whose write the store refuses (a document broken by
hand, say) is that event's error only: the bulk goes on with the next event.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pymongo.errors import WriteError

from messages import Event
from messages.errors import PermanentError
from readstore.steps import Step, insert_new, run_steps

if TYPE_CHECKING:
    from readstore.projection import Projection

Outcome = bool | Exception


def apply_batch(projection: Projection, events: Sequence[Event]) -> list[Outcome]:
    """Apply ``events`` to ``projection``'s documents. Per event: ``True`` when this batch
    applied it, ``False`` when applied alone it was found applied or held, or its error."""
    outcomes: list[Outcome] = [False] * len(events)
    by_collection: dict[str, list[tuple[int, list[Step]]]] = defaultdict(list)
    for i, event in enumerate(events):
        try:
            steps = projection.steps(event, projection.place(event))
        except PermanentError as exc:
            outcomes[i] = exc
            continue
        by_collection[steps[0].collection].append((i, steps))
    for name, planned in by_collection.items():
        for i, outcome in _write(projection, name, planned).items():
            outcomes[i] = outcome
    rest = [i for i, o in enumerate(outcomes) if o is False]
    for i in _in_stream_order(events, rest):
        outcomes[i] = _alone(projection, events[i])
    return outcomes


def _write(
    projection: Projection, name: str, planned: list[tuple[int, list[Step]]]
) -> dict[int, Outcome]:
    """Write the ``planned`` events' steps to collection ``name`` (with, for the live model,
    its ``touched`` steps after them); by event index: ``True`` for those this write applied,
    the store's error for those whose own write it refused (the others missed a step)."""
    planned = sorted(planned, key=lambda item: max(step.order for step in item[1]))
    groups = [steps for _, steps in planned]
    if projection.is_live():
        groups.append(projection.touched())
    collection = projection.database[name]
    failed: dict[int, WriteError] = {}
    missed = run_steps(collection, insert_new(collection, groups), failed)
    if len(planned) in failed:  # the touched steps: no event's own
        raise failed[len(planned)]
    return {i: failed.get(g, True) for g, (i, _) in enumerate(planned) if g not in missed}


def _in_stream_order(events: Sequence[Event], indexes: list[int]) -> list[int]:
    return sorted(indexes, key=lambda i: (str(events[i].stream_id), events[i].stream_version or 0))


def _alone(projection: Projection, event: Event) -> Outcome:
    """``event`` applied on its own, as a single delivery would be."""
    try:
        return projection.apply_one(event)
    except Exception as exc:  # this event's failure, not the batch's
        return exc
