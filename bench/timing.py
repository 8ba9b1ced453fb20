"""Timing helpers: medians over repeated batches, sized so that each batch takes a while."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any


def median_us(
    call: Callable[[Any], Any], arg: Any, *, repeats: int = 11, batch_seconds: float = 0.02
) -> float:
    """The median CPU time of ``call(arg)`` in microseconds, over ``repeats`` batches.

    CPU time of this process (``time.process_time``), not wall time: the engines
    compute in-process, and on a shared machine other processes' load would
    otherwise show up as noise.
    """
    clock = time.process_time
    call(arg)  # warm
    batch = 1
    while True:  # grow the batch until it takes batch_seconds
        start = clock()
        for _ in range(batch):
            call(arg)
        elapsed = clock() - start
        if elapsed >= batch_seconds or batch >= 1 << 20:
            break
        batch *= 2
    samples = []
    for _ in range(repeats):
        start = clock()
        for _ in range(batch):
            call(arg)
        samples.append((clock() - start) / batch * 1e6)
    return statistics.median(samples)


def interleaved_us(
    calls: dict[str, Callable[[], Any]], *, rounds: int = 15, batch: int = 200
) -> dict[str, float]:
    """Median wall-clock microseconds per call of each of ``calls``, run in alternating batches.

    Wall time, because a request's cost includes waiting on the database and the cache.

    Alternating (A, B, A, B, …) spreads the machine's drift over both sides,
    which matters when the difference sought is a few percent.
    """
    for call in calls.values():
        for _ in range(batch // 4 or 1):
            call()
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start = time.perf_counter()
            for _ in range(batch):
                call()
            samples[name].append((time.perf_counter() - start) / batch * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}
