"""Worker logs under load: one whole JSON object per line, whatever the process count."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from pymongo import MongoClient

from sagas.store import SagaStore
from tests.conftest import AMQP_URL
from workers.workloads.bench_saga import _place, _set_up, _wait

SAGAWORKS = str(Path(sys.executable).parent / "sagaworks")
ORDERS = 40


def _unparseable(lines: list[str]) -> list[str]:
    bad = []
    for line in lines:
        try:
            if not isinstance(json.loads(line), dict):
                bad.append(line)
        except ValueError:
            bad.append(line)
    return bad


def test_two_processes_of_eight_threads_under_the_saga_bench_log_one_json_per_line(
    settings: Any, rabbitmq_broker: Any, mongo_url: str, tmp_path: Path
) -> None:
    # Given `sagaworks worker --processes 2 --threads 8`, logging JSON, some handler calls failing
    env = {
        **os.environ,
        "SAGAWORKS_AMQP_URL": AMQP_URL,
        "SAGAWORKS_MONGODB_URL": mongo_url,
        "SAGAWORKS_MONGODB_DB": settings.mongodb_db,
        "SAGAWORKS_QUEUE_PREFIX": settings.queue_prefix,
        "SAGAWORKS_FULFILMENT_SAGA": "true",
        "SAGAWORKS_LOG_FORMAT": "json",
        "SAGAWORKS_LOG_LEVEL": "INFO",
        "SAGAWORKS_FAULT_FAILURE_RATE": "0.1",
        "SAGAWORKS_MIN_BACKOFF_MS": "10",
        "SAGAWORKS_MAX_BACKOFF_MS": "200",
    }
    log_file = tmp_path / "worker.log"
    command = [SAGAWORKS, "worker", "--processes", "2", "--threads", "8"]
    with log_file.open("wb") as out:
        worker = subprocess.Popen(command, env=env, stdout=out, stderr=out, start_new_session=True)
        observer: MongoClient[Any] = MongoClient(mongo_url, tz_aware=True)
        try:
            # When the saga bench's orders run through it
            sent = _place(ORDERS, 0, _set_up(ORDERS))
            _wait(SagaStore(observer[settings.mongodb_db]), set(sent), timeout=240)
        finally:
            os.killpg(worker.pid, signal.SIGTERM)
            worker.wait(timeout=60)
            observer.close()

    # Then every line of its output is one JSON object
    lines = log_file.read_text(encoding="utf-8").splitlines()
    bad = _unparseable(lines)
    print(f"\nworker log: {len(lines)} lines, {len(bad)} unparseable")
    assert len(lines) > ORDERS * 4
    assert bad == [], bad[:5]
