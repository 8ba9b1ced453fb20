"""Timing helpers: medians over repeated batches, sized so that each batch takes a while."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def interleaved_cpu_us(
    calls: dict[str, tuple[Callable[[Any], Any], Any]], *, rounds: int = 21, batch_seconds: float = 0.005
) -> dict[str, float]:
    """Median CPU microseconds per call for each ``name: (call, arg)``, the calls taking turns.

    Each call gets a batch size that takes about ``batch_seconds``; then every
    round runs one batch of each. A burst of load from another process then
    lands on all of them alike, and moves no median unless it lasts most of
    the run. The garbage collector is paused, as ``timeit`` does.
    """
    clock = time.process_time
    batches: dict[str, int] = {}
    samples: dict[str, list[float]] = {name: [] for name in calls}
    with _gc_paused():
        for name, (call, arg) in calls.items():
            call(arg)  # warm
            batch = 1
            while True:
                start = clock()
                for _ in range(batch):
                    call(arg)
                if clock() - start >= batch_seconds or batch >= 1 << 20:
                    break
                batch *= 2
            batches[name] = batch
        for _ in range(rounds):
            for name, (call, arg) in calls.items():
                batch = batches[name]
                start = clock()
                for _ in range(batch):
                    call(arg)
                samples[name].append((clock() - start) / batch * 1e6)
    return {name: statistics.median(values) for name, values in samples.items()}


def interleaved_us(
    calls: dict[str, Callable[[], Any]], *, rounds: int = 15, batch: int = 200
) -> dict[str, tuple[float, float]]:
    """Median (wall-clock, CPU) microseconds per call of each of ``calls``, in alternating batches.

    Alternating (A, B, A, B, …) spreads the machine's drift over both sides,
    which matters when the difference sought is a few percent. Wall time
    includes waiting on the database and the cache; CPU time (this process's)
    leaves out other processes' load, and equals the work done when a request
    waits on nothing.
    """
    for call in calls.values():
        for _ in range(batch // 4 or 1):
            call()
    wall: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(batch):
                call()
            cpu[name].append((time.process_time() - start_cpu) / batch * 1e6)
            wall[name].append((time.perf_counter() - start) / batch * 1e6)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in calls}
