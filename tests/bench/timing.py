"""Latency samples and their percentiles (nearest rank: p99 of 300 samples is the 297th)."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass
class Timing:
    label: str
    samples: list[float]  # seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.samples)
        return ordered[max(0, math.ceil(len(ordered) * p / 100) - 1)]

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.samples) * 1e3

    @property
    def p99_ms(self) -> float:
        return self.percentile(99) * 1e3

    def to_json(self) -> dict[str, Any]:
        return {
            "p50_us": round(self.p50_ms * 1e3, 1),
            "p99_us": round(self.p99_ms * 1e3, 1),
            "samples": len(self.samples),
        }


def timeit(label: str, fn: Callable[[int], object], rounds: int) -> Timing:
    """``fn(i)`` for i in range(rounds), each call timed on its own."""
    samples = []
    for i in range(rounds):
        start = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - start)
    return Timing(label, samples)
