"""Progress display of a benchmark run (rich): the whole run's steps, and the step in hand."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn


class Reporter:
    """Two bars: steps of the run, and records (or seconds) of the current step. Use as a context manager."""

    def __init__(self, console: Console, total_steps: int) -> None:
        self.console = console
        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TimeElapsedColumn(), console=console, refresh_per_second=4)
        self._overall = self._progress.add_task("[bold]tickwire bench", total=total_steps)
        self._current: TaskID | None = None

    def __enter__(self) -> Reporter:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    @contextmanager
    def step(self, description: str, total: float | None = None) -> Iterator[None]:
        """One step of the run; ``update`` moves its bar. The overall bar advances when it ends."""
        self._current = self._progress.add_task(f"  {description}", total=total)
        try:
            yield
        finally:
            self._progress.remove_task(self._current)
            self._current = None
            self._progress.advance(self._overall)

    def update(self, completed: float) -> None:
        if self._current is not None:
            self._progress.update(self._current, completed=completed)

    def note(self, message: str) -> None:
        """A line above the bars (a finished measurement)."""
        self.console.print(message, highlight=False)
