"""The command line a new user expects: version, help and defaults, checked choices, clean
standard output, one exit-code convention, quiet on a closed pipe."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from workers.cli import build_parser, main

SAGAWORKS = str(Path(sys.executable).parent / "sagaworks")


def _options(parser: argparse.ArgumentParser, path: str = "sagaworks"):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, action


def test_version_prints_the_package_version(capsys):
    # When --version is asked for
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    # Then it exits 0 with the version on standard output
    assert exited.value.code == 0
    assert capsys.readouterr().out.startswith("sagaworks 0.")


def test_every_option_of_every_command_has_help_and_says_its_default():
    # Given every option of every sub-command
    for path, action in _options(build_parser()):
        # Then each has help text, and a meaningful default is shown in it
        assert action.help, f"{path} {action.option_strings or action.dest}: no help"
        if action.default not in (None, False, [], 0, argparse.SUPPRESS):
            assert "default" in action.help, f"{path} {action.option_strings}: default not shown"


def test_sagas_list_refuses_an_unknown_state_listing_the_states(capsys):
    # When a state that does not exist is asked for
    with pytest.raises(SystemExit) as exited:
        main(["sagas", "list", "--state", "bogus"])
    # Then it is a usage error that names the states there are
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in error and "charging" in error and "cancelled" in error


def test_a_one_shot_command_with_json_prints_only_json_and_no_boot_line(settings, mongo_url):
    # Given the servers of this test
    env = {
        **os.environ,
        "SAGAWORKS_AMQP_URL": settings.amqp() or "",
        "SAGAWORKS_MONGODB_URL": mongo_url,
        "SAGAWORKS_MONGODB_DB": settings.mongodb_db,
    }
    env.pop("SAGAWORKS_LOG_LEVEL", None)
    # When a one-shot command that boots runs with --json
    done = subprocess.run(
        [SAGAWORKS, "dlq", "list", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    # Then standard output is one JSON document and standard error has no boot line
    assert done.returncode == 0, done.stderr
    json.loads(done.stdout)
    assert "runtime.booted" not in done.stderr


def test_a_closed_output_pipe_ends_the_command_quietly(tmp_path):
    # Given an output pipe whose reader is already gone
    read_end, write_end = os.pipe()
    os.close(read_end)
    # When a command writes its answer into it
    command = [SAGAWORKS, "schema", "export", "--out", str(tmp_path), "--json"]
    done = subprocess.run(
        command, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=60, check=False
    )
    os.close(write_end)
    # Then it exits 141 without a traceback
    assert done.returncode == 141
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr
