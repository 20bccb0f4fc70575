"""khook in a cluster: Hooks from the API server, objects read on demand, and what happened
written back as Hook status and Kubernetes Events."""

from khook.cluster._events import HookEventWriter
from khook.cluster._hooks import ClusterHookSource, HookDoc
from khook.cluster._reader import ClusterObjectReader
from khook.cluster._recorder import KubeRecorder
from khook.cluster._status import HookStatusWriter

__all__ = [
    "ClusterHookSource",
    "ClusterObjectReader",
    "HookDoc",
    "HookEventWriter",
    "HookStatusWriter",
    "KubeRecorder",
]
