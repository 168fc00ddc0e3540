"""The module a Dramatiq worker process imports: boots from the environment, binds every actor."""

from __future__ import annotations

from workers.boot import boot

runtime = boot(embedded_ok=False)
broker = runtime.broker
