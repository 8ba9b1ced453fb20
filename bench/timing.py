"""Timing helpers: medians over repeated batches, sized so that each batch takes a while."""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from stepup.policy.collector import collector_paused


@contextmanager
def _gc_paused() -> Iterator[None]:
    """A collection now, then none while timing (as ``timeit`` does)."""
    gc.collect()
    with collector_paused():
        yield


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
    calls: dict[str, Callable[[], Any]], *, requests: int = 8000
) -> dict[str, tuple[float, float]]:
    """Median (wall-clock, CPU) microseconds of one call of each of ``calls``, the calls alternating.

    The calls take turns one at a time (A B, then B A, …), each timed on its
    own, and the median of each side is taken. Drift and bursts of load from
    other processes then land on both sides alike, and a preempted call is
    an outlier that moves no median: this is what makes a difference of a
    few percent measurable on a noisy machine. Wall time includes waiting on
    the database and the cache; CPU time (this process's) leaves out other
    processes' load. The garbage collector is paused, as ``timeit`` does.
    """
    wall_clock, cpu_clock = time.perf_counter_ns, time.process_time_ns
    names = list(calls)
    wall: dict[str, list[int]] = {name: [] for name in names}
    cpu: dict[str, list[int]] = {name: [] for name in names}
    for call in calls.values():
        for _ in range(50):
            call()
    with _gc_paused():
        for i in range(requests):
            for name in names if i % 2 else reversed(names):
                call = calls[name]
                start, start_cpu = wall_clock(), cpu_clock()
                call()
                cpu[name].append(cpu_clock() - start_cpu)
                wall[name].append(wall_clock() - start)
    return {name: (statistics.median(wall[name]) / 1e3, statistics.median(cpu[name]) / 1e3) for name in names}


def mixed_us(
    calls: dict[str, Callable[[], Any]], *, requests: int = 8000, seed: int = 18
) -> dict[str, tuple[float, float, float]]:
    """Median wall-clock, median CPU and mean wall-clock µs of each of ``calls``, in mixed order.

    Every round runs each call once, in a new random order (seeded, so runs
    repeat): the order real traffic has, where a protected request follows a
    page, an unmatched route or another protected one, and no call finds the
    caches only it warmed just before. The mean counts the rare slow
    requests too (a batch of decision-log rows written after a response);
    the medians leave them out. The garbage collector is paused, as
    ``timeit`` does.
    """
    import random

    wall_clock, cpu_clock = time.perf_counter_ns, time.process_time_ns
    order = list(calls)
    shuffle = random.Random(seed).shuffle
    wall: dict[str, list[int]] = {name: [] for name in order}
    cpu: dict[str, list[int]] = {name: [] for name in order}
    for _ in range(50):
        shuffle(order)
        for name in order:
            calls[name]()
    with _gc_paused():
        for _ in range(requests):
            shuffle(order)
            for name in order:
                call = calls[name]
                start, start_cpu = wall_clock(), cpu_clock()
                call()
                cpu[name].append(cpu_clock() - start_cpu)
                wall[name].append(wall_clock() - start)
    return {
        name: (
            statistics.median(wall[name]) / 1e3,
            statistics.median(cpu[name]) / 1e3,
            statistics.fmean(wall[name]) / 1e3,
        )
        for name in order
    }
