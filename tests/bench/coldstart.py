"""Cold start: from Popen to the first 202, polling every 10 ms with a POST of a new incident
(an OOM-killed pod of a workload never seen: for khook the whole path, its prompt rendered in
a sandbox process that has to start, and the dry-run agent called).

Each run is a fresh process in a fresh directory, with the image's environment (Containerfile
ENV) and, for khook, the sample Hooks and the memory store: ``functions-framework --target
handle --source functions/main.py``, ``khook serve`` (the image's entrypoint), and the bare
function for comparison. Bytecode is already compiled, as in the image.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tests.bench import servers, streams


@dataclass
class ColdStart:
    kind: str
    seconds: list[float]

    def to_json(self) -> dict[str, Any]:
        return {
            "runs": [round(s, 3) for s in self.seconds],
            "median_s": round(statistics.median(self.seconds), 3),
            "max_s": round(max(self.seconds), 3),
        }


def measure(workdir: Path, runs: int) -> dict[str, ColdStart]:
    out = {kind: ColdStart(kind, []) for kind in servers.KINDS}
    for n in range(runs):
        # Alternating, so that whatever else the machine does falls on all three alike.
        for kind in servers.KINDS:
            template = streams.new_incident(datetime.now(UTC))
            probe = template.render(f"cold{n}", 1)
            directory = workdir / f"cold-{kind.replace(' ', '-')}-{n}"
            server = servers.launch(kind, directory, probe)
            server.stop()
            out[kind].seconds.append(server.started_in)
    return out
