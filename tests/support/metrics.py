"""Reading what ``GET /metrics`` answers, with prometheus-client's own parser."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import httpx
from prometheus_client.parser import text_string_to_metric_families

Labels = tuple[tuple[str, str], ...]


class Scrape:
    """One scrape: every sample by its name and labels; families by name with their type."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.types: dict[str, str] = {}
        self.samples: dict[tuple[str, Labels], float] = {}
        for family in text_string_to_metric_families(text):
            self.types[family.name] = family.type
            for sample in family.samples:
                key = (sample.name, tuple(sorted(sample.labels.items())))
                assert key not in self.samples, f"{key} twice in one scrape"
                self.samples[key] = sample.value

    def value(self, name: str, **labels: str) -> float:
        """The sample with exactly these labels; 0 when there is none (not yet counted)."""
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels``."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= set(ls))

    def moved(self, before: Scrape, name: str) -> dict[Labels, float]:
        """How each sample of ``name`` changed since ``before`` (only those that did)."""
        keys = {ls for n, ls in (*self.samples, *before.samples) if n == name}
        deltas = {
            ls: self.samples.get((name, ls), 0.0) - before.samples.get((name, ls), 0.0)
            for ls in keys
        }
        return {ls: d for ls, d in deltas.items() if d}


def scrape(get: Callable[[str], httpx.Response]) -> Scrape:
    response = get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    return Scrape(response.text)


def labels(**values: str) -> Labels:
    return tuple(sorted(values.items()))


def as_labels(moved: Mapping[Labels, float]) -> dict[tuple[str, ...], float]:
    """Deltas keyed by label values only (in label-name order), for short expectations."""
    return {tuple(v for _, v in ls): d for ls, d in moved.items()}
