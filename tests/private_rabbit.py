"""A private RabbitMQ node for tests that stop, restart or break the broker.

The shared node on 5672 is never touched: a private node has its own node name, free ports,
its own config file (the system one pins the listener to 5672), its own directories owned by
the ``rabbitmq`` user, and no plugins (like a fresh machine: no management API). Starting one
needs root or the ``rabbitmq`` user; elsewhere ``PrivateRabbit.available()`` says why not.

    with PrivateRabbit.started() as node:
        node.url            # amqp://guest:guest@127.0.0.1:<port>/
        node.stop_app(); node.start_app()   # the broker goes away and comes back
        node.restart()                      # the whole node, stopped and started again
"""

from __future__ import annotations

import contextlib
import os
import pwd
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pika

SERVER = shutil.which("rabbitmq-server") or "/usr/sbin/rabbitmq-server"
CTL = shutil.which("rabbitmqctl") or "/usr/sbin/rabbitmqctl"
DIAGNOSTICS = shutil.which("rabbitmq-diagnostics") or "/usr/sbin/rabbitmq-diagnostics"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def listener_port() -> int:
    """A free port below the kernel's ephemeral range, for a server a test stops and starts
    again: while it is down, a client's outgoing connection may be given a free port of that
    range, and the restarted listener would find its own port taken (``eaddrinuse``)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    for _ in range(200):
        port = random.randrange(20000, max(low, 20001))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    return free_port()


class PrivateRabbit:
    """One RabbitMQ node of a test's own, in a temporary directory."""

    def __init__(self) -> None:
        self.name = f"sw{uuid.uuid4().hex[:8]}@localhost"
        self.port = listener_port()
        self.base = Path(tempfile.mkdtemp(prefix="sw-rabbit-"))
        self.process: subprocess.Popen[bytes] | None = None
        self._write_config()

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/"

    @staticmethod
    def available() -> str | None:
        """``None`` when a private node can be started here, else the reason it cannot."""
        if not Path(SERVER).exists():
            return "rabbitmq-server is not installed"
        try:
            rabbitmq = pwd.getpwnam("rabbitmq").pw_uid
        except KeyError:
            return "there is no rabbitmq user"
        if os.geteuid() not in (0, rabbitmq):
            return "a private RabbitMQ node needs root or the rabbitmq user"
        return None

    @classmethod
    @contextlib.contextmanager
    def started(cls) -> Iterator[PrivateRabbit]:
        node = cls()
        try:
            node.start()
            yield node
        finally:
            node.destroy()

    # -- configuration -------------------------------------------------------------------
    def _write_config(self) -> None:
        (self.base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "disk_free_limit.absolute = 10MB\n"
            "log.console = false\n"
            "log.file.level = warning\n"
        )
        (self.base / "enabled_plugins").write_text("[].\n")
        (self.base / "rabbitmq-env.conf").write_text("")
        for sub in ("mnesia", "log"):
            (self.base / sub).mkdir()
        with contextlib.suppress(KeyError, PermissionError):
            user = pwd.getpwnam("rabbitmq")
            for path in [self.base, *self.base.rglob("*")]:
                os.chown(path, user.pw_uid, user.pw_gid)

    def environment(self) -> dict[str, str]:
        return {
            **os.environ,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_CONFIG_FILE": str(self.base / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(self.base / "rabbitmq-env.conf"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(self.base / "enabled_plugins"),
            "RABBITMQ_MNESIA_BASE": str(self.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.base / "log"),
            "RABBITMQ_PID_FILE": str(self.base / "node.pid"),
            "ERL_EPMD_ADDRESS": "127.0.0.1",
        }

    # -- lifecycle -----------------------------------------------------------------------
    def start(self, timeout: float = 90.0) -> None:
        """Start the node (in the foreground of a child process) and wait until it serves."""
        self.process = subprocess.Popen(
            [SERVER],
            env=self.environment(),
            cwd=self.base,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self.wait_running(timeout)

    def wait_running(self, timeout: float = 90.0) -> None:
        """Until the app runs and accepts AMQP (``ping`` answers before the app is up)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"private RabbitMQ exited with {self.process.returncode}")
            if self.ctl("check_running", tool=DIAGNOSTICS).returncode == 0 and self.accepts():
                return
            time.sleep(0.5)
        raise TimeoutError(f"private RabbitMQ {self.name} did not start in {timeout} s")

    def accepts(self) -> bool:
        try:
            pika.BlockingConnection(pika.URLParameters(self.url)).close()
        except pika.exceptions.AMQPError:
            return False
        return True

    def ctl(
        self, *args: str, tool: str = CTL, timeout: float = 60.0
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [tool, "-q", "-n", self.name, *args],
            env=self.environment(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def stop_app(self) -> None:
        """The broker goes away (connections closed, listener down); the node stays up."""
        self._must(self.ctl("stop_app"))

    def start_app(self, timeout: float = 60.0) -> None:
        self._must(self.ctl("start_app"))
        self.wait_running(timeout)

    def restart(self, timeout: float = 90.0) -> None:
        """Stop the whole node and start it again (durable queues and messages survive)."""
        self.stop()
        self.start(timeout)

    def stop(self) -> None:
        if self.process is None:
            return
        self.ctl("stop")
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, 9)
            self.process.wait(timeout=10)
        self.process = None

    def destroy(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def add_user(self, user: str, password: str) -> None:
        """A user with every permission on ``/`` (no management API needed)."""
        self._must(self.ctl("add_user", user, password))
        self._must(self.ctl("set_permissions", "-p", "/", user, ".*", ".*", ".*"))

    @staticmethod
    def _must(run: subprocess.CompletedProcess[str]) -> None:
        if run.returncode != 0:
            raise RuntimeError(f"rabbitmqctl failed: {run.stderr.strip() or run.stdout.strip()}")


def main(argv: list[str]) -> int:
    """``python -m tests.private_rabbit [--] COMMAND…``: run COMMAND against a fresh private
    node with no plugins (no management API), as on a fresh machine; then remove the node."""
    command = argv[1:] if argv[:1] == ["--"] else argv
    reason = PrivateRabbit.available()
    if reason is not None or not command:
        print(reason or "usage: python -m tests.private_rabbit -- COMMAND…", file=sys.stderr)
        return 2
    with PrivateRabbit.started() as node:
        print(f"private RabbitMQ {node.name} at {node.url}, no plugins", file=sys.stderr)
        env = {
            **os.environ,
            "SAGAWORKS_AMQP_URL": node.url,
            "RABBITMQ_NODENAME": node.name,
            "SAGAWORKS_RABBITMQ_MANAGEMENT_URL": "http://127.0.0.1:9/",
        }
        return subprocess.call(command, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
