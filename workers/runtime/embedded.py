"""An embedded SecantusDB server (a MongoDB-compatible server) for the demo and the tests."""

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


@dataclass
class EmbeddedMongo:
    """A SecantusDB server in a child process, in memory, on a free local port."""

    process: subprocess.Popen[bytes]
    url: str

    @classmethod
    def start(cls, timeout: float = 30.0) -> EmbeddedMongo:
        try:
            import secantus  # noqa: F401, PLC0415 -- optional extra, imported only to check
        except ImportError:
            raise RuntimeError(
                "no MongoDB configured: set SAGAWORKS_MONGODB_URL, or install the embedded "
                "server with `pip install 'sagaworks[embedded]'`"
            ) from None
        port = free_port()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "secantus",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--storage-path",
                ":memory:",
                "--log-level",
                "WARNING",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 -- prctl only, async-signal-safe
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        url = f"mongodb://127.0.0.1:{port}/?directConnection=true&retryWrites=false"
        server = cls(process, url)
        server._wait_ready(timeout)
        return server

    def _wait_ready(self, timeout: float) -> None:
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
