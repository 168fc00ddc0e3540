"""The layering holds: imports point one way, and no two modules import each other in a circle."""

from __future__ import annotations

import pytest

from tests.architecture.imports import cycles, graph, layer

TOP = {"messages", "readstore", "sagas"}
#: What each layer may import besides itself. Order: lower layers first.
ALLOWED: dict[str, set[str]] = {
    "messages": set(),
    "workers": set(),
    "readstore": {"messages"},
    "sagas": {"messages"},
    "workers.runtime": TOP,
    "workers.write": TOP | {"workers.runtime"},
    "workers.deadletters": TOP | {"workers.runtime"},
    "workers.middleware": TOP | {"workers.runtime", "workers.deadletters", "workers.write"},
    "workers.publishing": TOP | {"workers.runtime", "workers.write"},
    "workers.rpc": TOP | {"workers.runtime", "workers.write", "workers.publishing"},
    "workers.contexts": TOP | {"workers.runtime", "workers.write", "workers.publishing"},
    "workers.subscribers": TOP
    | {"workers.runtime", "workers.write", "workers.publishing", "workers.deadletters"},
    "workers.ops": TOP
    | {
        "workers.runtime",
        "workers.write",
        "workers.deadletters",
        "workers.middleware",
        "workers.subscribers",
    },
    "workers.boot": TOP
    | {
        "workers.runtime",
        "workers.write",
        "workers.deadletters",
        "workers.middleware",
        "workers.publishing",
        "workers.rpc",
        "workers.contexts",
        "workers.subscribers",
        "workers.ops",
    },
    "workers.app": {"workers.boot"},
}
#: Entry points and tooling above the running worker: they may import any layer below them.
ABOVE_THE_WORKER = {
    "workers.console": {"workers.cli", "workers.workloads", "workers.testing"},
    "workers.testing": {"workers.cli", "workers.workloads", "workers.console"},
    "workers.workloads": {"workers.cli"},
    "workers.cli": set(),
}


def allowed(source: str, target: str) -> bool:
    if source in ABOVE_THE_WORKER:
        return target not in ABOVE_THE_WORKER[source]
    return target in ALLOWED[source]


def upward_edges(edges: dict[str, set[str]]) -> list[str]:
    """Every import of a layer its importer may not see, as ``module -> module``."""
    return [
        f"{module} -> {target}"
        for module, targets in sorted(edges.items())
        for target in sorted(targets)
        if layer(module) != layer(target) and not allowed(layer(module), layer(target))
    ]


def test_every_module_belongs_to_a_declared_layer() -> None:
    # Given every module of the four packages
    layers = {layer(module) for module in graph()}
    # Then each lies in a layer whose place is declared here (a new folder must say its place)
    assert layers <= set(ALLOWED) | set(ABOVE_THE_WORKER), layers - set(ALLOWED)


def test_no_module_imports_a_layer_above_it() -> None:
    # Given the import graph, function-level imports included
    edges = graph()
    # Then no import points upward
    assert upward_edges(edges) == []


def test_no_import_cycles() -> None:
    assert cycles(graph()) == []


@pytest.mark.parametrize(
    ("edges", "expected"),
    [
        ({"messages.base": {"readstore.db"}}, ["messages.base -> readstore.db"]),
        (
            {"workers.runtime.broker": {"workers.contexts.orders"}},
            ["workers.runtime.broker -> workers.contexts.orders"],
        ),
        ({"workers.boot": {"workers.cli"}}, ["workers.boot -> workers.cli"]),
        ({"workers.cli": {"workers.boot"}}, []),
    ],
)
def test_the_check_catches_an_upward_import(
    edges: dict[str, set[str]], expected: list[str]
) -> None:
    # Given a graph with one import  Then the check names exactly the upward ones
    assert upward_edges(edges) == expected


def test_the_check_catches_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
