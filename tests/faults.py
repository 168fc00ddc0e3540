"""The fault-injection runner: the service as an operator runs it, broken on a schedule.

Separate ``sagaworks worker`` and ``sagaworks relay`` processes, a private RabbitMQ node, and
a file-backed SecantusDB server in its own process (so it can be paused). Orders flow in
batches; in the middle of each batch one fault strikes (a worker killed with SIGKILL, the
store paused with SIGSTOP past the driver's timeouts and a saga deadline, the relay killed,
the broker restarted); then the run waits until every order is terminal and measures how
long that took after the fault ended. Every batch ends with the same checks: invariants,
read models, no dead letter, no parked stream, ``sagaworks status`` healthy.

    with Stack.started(workdir) as stack:  # run_schedule is in tests.fault_runs
        results = run_schedule(stack, [Fault("kill_worker"), Fault("pause_store", 20)], 100)
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pymongo import MongoClient
from pymongo.database import Database

from readstore.db import Document
from tests.private_rabbit import PrivateRabbit, free_port
from workers.ops.status import status as status_figures
from workers.runtime.settings import Settings

SAGAWORKS = str(Path(sys.executable).parent / "sagaworks")
#: The store's URL as the processes use it: driver timeouts short enough for a pause to pass.
STORE_OPTIONS = (
    "directConnection=true&retryWrites=false&serverSelectionTimeoutMS=5000"
    "&socketTimeoutMS=5000&connectTimeoutMS=5000"
)
SECANTUS = (sys.executable, "-m", "secantus", "--host", "127.0.0.1")
KINDS = ("none", "kill_worker", "pause_store", "kill_relay", "restart_broker", "soak")


@dataclass(frozen=True)
class Fault:
    """One fault: its kind and how long it lasts (seconds down, paused or dead)."""

    kind: str
    seconds: float = 0.0

    @property
    def label(self) -> str:
        return self.kind if not self.seconds else f"{self.kind} {self.seconds:g}s"


@dataclass
class Outcome:
    """One batch under one fault, as the results table shows it."""

    fault: str
    orders: int
    confirmed: int = 0
    cancelled: int = 0
    unfinished: int = 0
    invariants: bool = False
    consistent: bool = False
    dead_letters: int = 0
    parked_streams: int = 0
    status_exit: int | None = None
    recovery_seconds: float | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def green(self) -> bool:
        return (
            self.unfinished == 0
            and self.invariants
            and self.consistent
            and self.dead_letters == 0
            and self.parked_streams == 0
            and self.status_exit == 0
        )


@dataclass
class Stack:
    """The broker, the store, one worker and one relay: real processes, killable."""

    workdir: Path
    rabbit: PrivateRabbit
    store: subprocess.Popen[bytes]
    store_url: str
    settings: Settings
    worker_env: dict[str, str]
    worker: subprocess.Popen[bytes] | None = None
    relay: subprocess.Popen[bytes] | None = None

    @classmethod
    @contextlib.contextmanager
    def started(cls, workdir: Path, **environment: str) -> Iterator[Stack]:
        workdir.mkdir(parents=True, exist_ok=True)
        with PrivateRabbit.started() as rabbit:
            store, url = start_store(workdir / "store")
            tag = uuid.uuid4().hex[:8]
            env = stack_environment(rabbit.url, url, f"faults_{tag}", f"f{tag}.", environment)
            stack = cls(workdir, rabbit, store, url, settings_from(env), env)
            try:
                stack.start_worker()
                stack.start_relay()
                yield stack
            finally:
                stack.close()

    def database(self) -> Database[Document]:
        """The store as the checks read it (no short driver timeouts: they scan it all)."""
        url = self.store_url.split("&serverSelectionTimeoutMS")[0]
        client: MongoClient[Document] = MongoClient(
            url, tz_aware=True, uuidRepresentation="standard"
        )
        return client[self.settings.mongodb_db]

    def _spawn(self, name: str, *args: str, extra: dict[str, str] | None = None) -> Any:
        log = (self.workdir / f"{name}.log").open("ab")
        return subprocess.Popen(
            [SAGAWORKS, *args],
            env={**self.worker_env, **(extra or {})},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start_worker(self, extra: dict[str, str] | None = None) -> None:
        self.worker = self._spawn(
            "worker", "worker", "--processes", "1", "--threads", "6", extra=extra
        )

    def start_relay(self) -> None:
        self.relay = self._spawn("relay", "relay")

    def kill(self, process: subprocess.Popen[bytes] | None) -> None:
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)

    def status(self) -> tuple[int, dict[str, Any]]:
        """What ``sagaworks status`` exits with (1: something needs attention) and shows;
        the same function, called here: a new process per check costs seconds under load."""
        database = self.database()
        try:
            result = status_figures(self.settings, database)
        finally:
            database.client.close()
        return (1 if result.attention else 0), result.asdict()

    def close(self) -> None:
        """Everything killed at once: the run is over and its store and node are thrown away
        (a graceful stop of each would only cost time)."""
        for process in (self.worker, self.relay):
            self.kill(process)
        self.store.kill()  # a process of its own, not a group: SIGKILL ends it even paused
        self.store.wait(timeout=30)


def start_store(path: Path, timeout: float = 30.0) -> tuple[subprocess.Popen[bytes], str]:
    """A file-backed SecantusDB server in a process of its own."""
    path.mkdir(parents=True, exist_ok=True)
    port = free_port()
    process = subprocess.Popen(
        [*SECANTUS, "--port", str(port), "--storage-path", str(path), "--log-level", "WARNING"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"mongodb://127.0.0.1:{port}/?{STORE_OPTIONS}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception), MongoClient(url) as client:
            client.admin.command("ping")
            return process, url
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("the file-backed store did not start")


def stack_environment(
    amqp: str, mongo: str, database: str, prefix: str, extra: dict[str, str]
) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("SAGAWORKS_")},
        "SAGAWORKS_AMQP_URL": amqp,
        "SAGAWORKS_MONGODB_URL": mongo,
        "SAGAWORKS_MONGODB_DB": database,
        "SAGAWORKS_QUEUE_PREFIX": prefix,
        "SAGAWORKS_FULFILMENT_SAGA": "true",
        "SAGAWORKS_SAGA_STEP_DEADLINE_SECONDS": "4",
        "SAGAWORKS_RELAY_GRACE_SECONDS": "2",
        "SAGAWORKS_MAX_BACKOFF_MS": "5000",
        "SAGAWORKS_MAX_RETRIES": "20",
        # A private node has no management API; say so instead of asking the shared node's.
        "SAGAWORKS_RABBITMQ_MANAGEMENT_URL": "http://127.0.0.1:9/",
        "SAGAWORKS_LOG_FORMAT": "json",
        "SAGAWORKS_LOG_LEVEL": "WARNING",
        **extra,
    }


def settings_from(env: dict[str, str]) -> Settings:
    values = {k.removeprefix("SAGAWORKS_").lower(): v for k, v in env.items()}
    known = {k: v for k, v in values.items() if k in Settings.model_fields}
    return Settings(**known, _env_file=None)  # type: ignore[call-arg]


# -- faults ----------------------------------------------------------------------------------
def strike(stack: Stack, fault: Fault) -> None:
    """Inflict ``fault`` and end it (restart what was killed, resume what was paused)."""
    if fault.kind == "kill_worker":
        stack.kill(stack.worker)
        time.sleep(fault.seconds)
        stack.start_worker()
    elif fault.kind == "pause_store":
        stack.store.send_signal(signal.SIGSTOP)
        time.sleep(fault.seconds)
        stack.store.send_signal(signal.SIGCONT)
    elif fault.kind == "kill_relay":
        stack.kill(stack.relay)
        time.sleep(fault.seconds)
        stack.start_relay()
    elif fault.kind == "restart_broker":
        stack.rabbit.stop_app()
        time.sleep(fault.seconds)
        stack.rabbit.start_app()
    elif fault.kind == "soak":
        stack.kill(stack.worker)
        stack.start_worker(
            {"SAGAWORKS_FAULT_FAILURE_RATE": "0.1", "SAGAWORKS_FAULT_DUPLICATE_RATE": "0.1"}
        )
    elif fault.kind != "none":
        raise ValueError(f"unknown fault {fault.kind!r}; one of {', '.join(KINDS)}")
