"""Progress bars on standard error (``rich``), drawn only in a terminal: never in a pipe or log."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class Advance(Protocol):
    def __call__(self, done: int) -> None: ...


@contextmanager
def progress_bar(label: str, total: int) -> Iterator[Advance]:
    """``with progress_bar("orders", 200) as show: show(done)``; a no-op outside a terminal."""
    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description:<22}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task(label, total=total)

        def show(done: int) -> None:
            bar.update(task, completed=done)

        yield show
