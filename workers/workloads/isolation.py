"""Workloads (demo, benches) run beside deployments: their own queues and database, always.

Whatever ``SAGAWORKS_QUEUE_PREFIX`` and ``SAGAWORKS_MONGODB_DB`` say, a workload derives a
prefix and a database name of its own from them, prints both, and only ever consumes, purges
or deletes the queues it declared under that prefix.
"""

from __future__ import annotations

import sys
import uuid
from typing import Any

from workers.runtime.settings import Settings


def isolated(settings: Settings, kind: str, **update: Any) -> Settings:
    """``settings`` with a queue prefix and a database of the workload's own."""
    tag = uuid.uuid4().hex[:8]
    own = settings.model_copy(
        update={
            "queue_prefix": f"{settings.queue_prefix}{kind}-{tag}.",
            "mongodb_db": f"{settings.mongodb_db}_{kind}_{tag}",
            **update,
        }
    )
    announce(kind, own)
    return own


def announce(kind: str, settings: Settings) -> None:
    where = "queues" if settings.amqp_url else "in-process queues"
    print(
        f"{kind}: {where} {settings.queue_prefix}* and database {settings.mongodb_db}, its own "
        "(a deployment's queues and data are never touched)",
        file=sys.stderr,
        flush=True,
    )
