"""Helpers for tests and the demo: settle a broker, run the service in-process and see what it
sent. Never imported by a running worker."""

from workers.testing.harness import Recorder, TestService
from workers.testing.settle import settle

__all__ = ["Recorder", "TestService", "settle"]
