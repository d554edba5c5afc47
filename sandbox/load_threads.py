"""The shell of a load generator for tests and benchmarks: threads that each loop until told to stop."""

from __future__ import annotations

import threading
from typing import Self


class LoadThreads:
    """`count` daemon threads running `_run` (which loops until `stop` is set); a context manager that starts
    them and, on exit, stops them and waits up to `join_seconds` for each. `lock` guards the subclass's tallies."""

    join_seconds = 10.0

    def __init__(self, count: int, name: str = "load") -> None:
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, name=f"{name}-{n}", daemon=True) for n in range(count)]

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(self.join_seconds)
