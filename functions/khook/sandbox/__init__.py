"""Rendering Hooks' prompts where a hostile template cannot hurt khook.

A prompt renders in one of a few separate processes (``ProcessRenderer``), each with an
address-space cap, under a wall-clock deadline; a process that overruns is killed and
replaced. Inside, the render keeps its own cooperative limits (khook.core.prompt).
"""

from khook.core.prompt import PromptError
from khook.sandbox._pool import SandboxBusy, SandboxError, shutdown
from khook.sandbox._renderer import InlineRenderer, ProcessRenderer, Renderer

__all__ = [
    "InlineRenderer",
    "ProcessRenderer",
    "PromptError",
    "Renderer",
    "SandboxBusy",
    "SandboxError",
    "shutdown",
]
