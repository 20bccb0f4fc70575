"""khook: Kubernetes event hooks for AI agents.

A CloudEvent from a Knative ApiServerSource flows one way through khook:
decode -> classify -> match Hooks -> deduplicate -> render prompt -> call the agent -> record.
The pure steps live in :mod:`khook.core`; every side effect sits behind a small seam.
"""

__version__ = "0.1.0"
