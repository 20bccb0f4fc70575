"""HTTP side by side: on one stream, rounds that alternate between the servers (bare, khook,
khook serve, bare, ...) after a warm-up, so that whatever else the machine does falls on all
of them alike. Per server: mean requests/s over the rounds, median of the rounds' p50 and p99.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.bench import load, streams
from tests.bench.servers import BARE, Server


@dataclass
class Column:
    kind: str
    rounds: list[load.Result] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return statistics.fmean(r.rate for r in self.rounds)

    @property
    def p50_ms(self) -> float:
        return statistics.median(r.p50_ms for r in self.rounds)

    @property
    def p99_ms(self) -> float:
        return statistics.median(r.p99_ms for r in self.rounds)

    @property
    def non202(self) -> int:
        return sum(r.non202 for r in self.rounds)

    @property
    def errors(self) -> int:
        return sum(r.errors for r in self.rounds)

    def outcomes(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for r in self.rounds:
            for name, n in r.outcomes.items():
                total[name] = total.get(name, 0) + n
        return total

    def to_json(self) -> dict[str, Any]:
        return {
            "rate": round(self.rate, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "non202": self.non202,
            "errors": self.errors,
            "outcomes": self.outcomes(),
            "rounds": [r.to_json() for r in self.rounds],
        }


@dataclass
class Comparison:
    stream: str
    columns: dict[str, Column]

    def ratio(self, kind: str) -> float:
        bare = self.columns[BARE].rate
        return self.columns[kind].rate / bare if bare else 0.0

    def round_ratios(self, kind: str) -> list[float]:
        """Each round's ratio to the bare round of the same pass, minutes apart at most: how
        far the machine moved the ratio between rounds."""
        pairs = zip(self.columns[kind].rounds, self.columns[BARE].rounds, strict=True)
        return [mine.rate / bare.rate if bare.rate else 0.0 for mine, bare in pairs]

    def p99_over_bare_ms(self, kind: str) -> float:
        return self.columns[kind].p99_ms - self.columns[BARE].p99_ms

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {kind: c.to_json() for kind, c in self.columns.items()}
        doc["ratio"] = {k: round(self.ratio(k), 3) for k in self.columns if k != BARE}
        doc["round_ratios"] = {
            k: [round(r, 3) for r in self.round_ratios(k)] for k in self.columns if k != BARE
        }
        return doc


def compare(
    name: str,
    running: dict[str, Server],
    *,
    rounds: int,
    seconds: float,
    warmup: float,
    workdir: Path,
    ids: Iterator[int],
) -> Comparison:
    """``ids``: run ids, unique over the whole bench, so no two requests share a ce-id."""
    stream = streams.build(name)
    for server in running.values():
        for template in stream.prime:
            status = server.post(*template.render("prime", 1))
            if status != 202:
                raise RuntimeError(f"{server.kind} answered {status} to a live incident's start")
        load.run(
            server.url, stream.templates, seconds=warmup, run_id=str(next(ids)), workdir=workdir
        )
    comparison = Comparison(name, {kind: Column(kind) for kind in running})
    for _ in range(rounds):
        for kind, server in running.items():
            result = load.run(
                server.url,
                stream.templates,
                seconds=seconds,
                run_id=str(next(ids)),
                workdir=workdir,
            )
            comparison.columns[kind].rounds.append(result)
    return comparison
