"""The README's and the docs' snippets are exercised, so they cannot rot: Python compiles and
its imports resolve, every ``sagaworks`` and ``make`` line parses, JSON is JSON, and every
path of the architecture tree exists."""

from __future__ import annotations

import importlib
import json
import re
import shlex
from pathlib import Path

import pytest

from workers.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.MULTILINE | re.DOTALL)


def blocks(language: str, documents: list[Path] = DOCUMENTS) -> list[tuple[str, str]]:
    """Every fenced block of ``language``: (where, code), indentation removed."""
    found = []
    for document in documents:
        for match in FENCE.finditer(document.read_text()):
            indent, lang, code = match.groups()
            if lang == language:
                code = "\n".join(line.removeprefix(indent) for line in code.splitlines())
                line = document.read_text()[: match.start()].count("\n") + 1
                found.append((f"{document.name}:{line}", code))
    return found


def shell_lines(prefix: str) -> list[tuple[str, list[str]]]:
    """Every line of a shell block that runs ``prefix``, split as a shell would (comments off)."""
    found = []
    for where, code in blocks("sh"):
        for line in code.splitlines():
            words = shlex.split(line, comments=True)
            if words[:1] == [prefix]:
                found.append((f"{where}: {line.strip()[:60]}", words[1:]))
    return found


@pytest.mark.parametrize(("where", "code"), blocks("python"))
def test_python_snippets_compile_and_their_imports_resolve(where: str, code: str) -> None:
    tree = compile(code, where, "exec", flags=0x400, dont_inherit=True)  # ast.PyCF_ONLY_AST
    for node in getattr(tree, "body", []):
        if node.__class__.__name__ == "ImportFrom":
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), f"{where}: {node.module}.{alias.name}"


@pytest.mark.parametrize(("where", "argv"), shell_lines("sagaworks"))
def test_sagaworks_command_lines_parse(where: str, argv: list[str]) -> None:
    # A bad sub-command or option makes argparse exit with status 2
    build_parser().parse_args(argv)


@pytest.mark.parametrize(("where", "argv"), shell_lines("make"))
def test_make_targets_exist(where: str, argv: list[str]) -> None:
    targets = re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert set(argv) <= set(targets), where


@pytest.mark.parametrize(("where", "code"), blocks("json"))
def test_json_snippets_parse(where: str, code: str) -> None:
    json.loads(code)


def test_every_path_in_the_architecture_tree_exists() -> None:
    # Given the tree drawn in docs/architecture.md
    [(_, tree), *_] = blocks("", [ROOT / "docs" / "architecture.md"])
    paths, parents = [], {0: ""}
    for line in tree.splitlines():
        name = line.split()[0] if line.strip() else ""
        if not re.fullmatch(r"[\w.]+/|[\w.]+\.py", name):
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        path = parents[depth] + name
        parents[depth + 1] = path
        paths.append(path)
    # Then each folder and module it names is in the repository
    assert paths
    assert [p for p in paths if not (ROOT / p).exists()] == []
