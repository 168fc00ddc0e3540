"""Running the Node.js examples from tests: node and npm are required in CI, never skipped there."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_PROJECT = Path(__file__).resolve().parent.parent / "examples" / "node"
#: npm's record of what it installed; newer than package-lock.json once `npm ci` ran.
INSTALLED = NODE_PROJECT / "node_modules" / ".package-lock.json"


def require_node() -> None:
    """Fail in CI when node or npm is missing; skip elsewhere."""
    missing = [tool for tool in ("node", "npm") if shutil.which(tool) is None]
    if missing:
        message = f"{' and '.join(missing)} not found on PATH"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def install() -> Path:
    """``npm ci`` from the committed package-lock.json, unless done since the lock changed."""
    require_node()
    lock = NODE_PROJECT / "package-lock.json"
    if not INSTALLED.exists() or INSTALLED.stat().st_mtime < lock.stat().st_mtime:
        subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund"],
            cwd=NODE_PROJECT,
            check=True,
            capture_output=True,
            timeout=600,
        )
    return NODE_PROJECT


def run_node(script: str, *args: str, env: dict[str, str] | None = None) -> str:
    """``node script args…`` in the example project; its stdout (fails on a non-zero exit)."""
    done = subprocess.run(
        ["node", script, *args],
        cwd=install(),
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, (
        f"node {script}: {done.returncode} {done.stdout[-2000:]} {done.stderr[-2000:]}"
    )
    return done.stdout
