"""``sagaworks bench``: throughput on the real RabbitMQ (written next)."""

from __future__ import annotations

from typing import Any


def run(commands: int, threads: int) -> dict[str, Any]:
    raise RuntimeError("the benchmark is not written yet")
