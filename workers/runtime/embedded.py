"""An embedded SecantusDB server (a MongoDB-compatible server) for the demo and the tests.

In memory (``:memory:``, the default) nothing survives the server. File-backed, it keeps a
WiredTiger journal and, by default here, fsyncs it on every commit (``--sync-on-commit``):
a write it acknowledged survives a SIGKILL of the server or a power loss. Without that
option only writes asked for with ``j=True`` are fsynced before the answer; the rest sit in
the journal's buffers and a crash loses the last ones.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from pymongo import MongoClient
from pymongo.errors import PyMongoError


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: ask Linux to stop the server when the process that started it dies."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


PR_SET_PDEATHSIG = 1


MEMORY = ":memory:"


def server_command(port: int, storage_path: str = MEMORY, *, sync_on_commit: bool) -> list[str]:
    """The command line of a SecantusDB server (``secantusd-py``) on ``port``."""
    command = [sys.executable, "-m", "secantus", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--storage-path", storage_path, "--log-level", "WARNING"]
    if sync_on_commit and storage_path != MEMORY:
        command.append("--sync-on-commit")
    return command


@dataclass
class EmbeddedMongo:
    """A SecantusDB server in a child process, on a free local port (or the one given)."""

    process: subprocess.Popen[bytes]
    url: str
    command: list[str]

    @classmethod
    def start(
        cls,
        storage_path: str = MEMORY,
        *,
        sync_on_commit: bool = True,
        port: int | None = None,
        timeout: float = 30.0,
    ) -> EmbeddedMongo:
        """Start a server; file-backed ones fsync every commit unless ``sync_on_commit=False``."""
        try:
            import secantus  # noqa: F401, PLC0415 -- optional extra, imported only to check
        except ImportError:
            raise RuntimeError(
                "no MongoDB configured: set SAGAWORKS_MONGODB_URL, or install the embedded "
                "server with `pip install 'sagaworks[embedded]'`"
            ) from None
        port = port or free_port()
        command = server_command(port, storage_path, sync_on_commit=sync_on_commit)
        url = f"mongodb://127.0.0.1:{port}/?directConnection=true&retryWrites=false"
        server = cls(_spawn(command), url, command)
        server._wait_ready(timeout)
        return server

    def restart(self, timeout: float = 60.0) -> None:
        """Start the server again on the same port and storage (after it stopped or died).
        The server is stopped when the *thread* that started it ends (``PR_SET_PDEATHSIG``):
        restart it from a thread that outlives it."""
        self.process = _spawn(self.command)
        self._wait_ready(timeout)

    def kill(self) -> None:
        """SIGKILL: the server gets no chance to flush or checkpoint (a crash)."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=30)

    def _wait_ready(self, timeout: float) -> None:
        """Wait until the server answers a ping (a reopened store replays its journal first)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"embedded SecantusDB exited with {self.process.returncode}")
            with contextlib.suppress(PyMongoError):
                client: MongoClient[dict[str, Any]]
                with MongoClient(self.url, serverSelectionTimeoutMS=300) as client:
                    client.admin.command("ping")
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError("embedded SecantusDB did not start in time")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()


def _spawn(command: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 -- prctl only, async-signal-safe
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
