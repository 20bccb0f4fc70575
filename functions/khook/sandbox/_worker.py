"""A render process: ``python -m khook.sandbox._worker MEMORY_BYTES``.

It caps its own address space (RLIMIT_AS) before its first render, answers one render
request at a time on stdin/stdout, and exits when stdin ends (khook has gone). Before each
render it sets a CPU-time limit (RLIMIT_CPU) a little past the render's deadline: should khook
be unable to kill it, the kernel does. After running out of memory it answers and exits, so
the next render gets a fresh process.
"""

from __future__ import annotations

import math
import os
import resource
import sys
from collections import OrderedDict
from typing import Any

_TEMPLATES = 128  # compiled templates kept per process


def _limit_memory(memory_bytes: int) -> None:
    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))


def _limit_cpu(seconds: float) -> None:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    soft = int(usage.ru_utime + usage.ru_stime) + math.ceil(seconds) + 1
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def main(argv: list[str]) -> int:
    _limit_memory(int(argv[1]))
    # Answers go to a private copy of stdout; anything printed goes to stderr instead.
    answers = os.dup(1)
    os.dup2(2, 1)
    from khook.core.prompt import PromptError, PromptTemplate, compile_prompt  # noqa: PLC0415
    from khook.sandbox._wire import (  # noqa: PLC0415
        FrameError,
        facts_from_wire,
        read_frame,
        write_frame,
    )

    templates: OrderedDict[str, PromptTemplate] = OrderedDict()

    def template(source: str) -> PromptTemplate:
        found = templates.pop(source, None) or compile_prompt(source)
        templates[source] = found
        while len(templates) > _TEMPLATES:
            templates.popitem(last=False)
        return found

    write_frame(answers, {"ready": True, "pid": os.getpid()})
    while True:
        try:
            request = read_frame(0)
        except FrameError:  # khook went away in the middle of a request
            return 0
        if request is None:
            return 0
        _limit_cpu(float(request.get("cpu", 2.0)))
        answer: dict[str, Any]
        leave = False
        try:
            text = template(request["source"]).render(
                facts_from_wire(request["facts"]), request.get("object")
            )
            answer = {"ok": True, "text": text}
        except PromptError as exc:
            answer = {"ok": False, "kind": exc.kind, "error": str(exc)}
            leave = exc.kind == "memory"
        except MemoryError:
            answer = {"ok": False, "kind": "memory", "error": "prompt ran out of memory"}
            leave = True
        except Exception as exc:  # a request khook should not have sent: say so, carry on
            answer = {"ok": False, "kind": "template", "error": f"render process: {exc!r}"}
        answer["exit"] = leave
        try:
            write_frame(answers, answer)
        except BrokenPipeError:
            return 0
        if leave:  # a fresh process for the next render
            return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
