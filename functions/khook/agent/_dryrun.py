from __future__ import annotations

import logging
import sys
import uuid
from typing import TextIO

from khook.agent._identity import check_user_id_template
from khook.agent._protocol import (
    A2AVersion,
    AgentRequest,
    AgentResult,
    HTTPRequest,
    build_http_request,
)
from khook.core.ids import uuid5_text
from khook.logs import json_line
from khook.settings import DEFAULT_USER_ID

logger = logging.getLogger("khook.agent")

DRY_RUN_BASE_URL = "http://kagent-controller.kagent.svc.cluster.local:8083"


class DryRunClient:
    """Sends nothing: writes the exact A2A request it would send as one JSON line, headers
    (the per-tenant ``X-User-Id`` included) and a follow-up's ``contextId``/``taskId`` as the
    real client sends them. Its answer opens a made-up conversation (``dry-run-<uuid>`` task
    and context ids) that follow-ups stay in, so they print as they would be sent."""

    def __init__(
        self,
        *,
        version: A2AVersion = A2AVersion.V0_3,
        base_url: str | None = None,
        user_id: str = DEFAULT_USER_ID,
        blocking: bool = False,
        out: TextIO | None = None,
    ) -> None:
        check_user_id_template(user_id)
        # With no agent to ask, "auto" can only mean what Kagent v0.7-v0.10 speak.
        self.version = A2AVersion.V0_3 if version is A2AVersion.AUTO else version
        self.base_url = base_url or DRY_RUN_BASE_URL
        self._user_id = user_id
        self._blocking = blocking
        self._out = out

    def http_request(self, request: AgentRequest) -> HTTPRequest:
        return build_http_request(
            self.base_url, request, self.version, user_id=self._user_id, blocking=self._blocking
        )

    def send(self, request: AgentRequest) -> AgentResult:
        line = {"dryRun": True, "agent": request.agent.id}
        line.update(self.http_request(request).redacted())
        out = self._out or sys.stdout
        out.write(json_line(line) + "\n")
        out.flush()
        # Derived from the message id: a replay of the same events prints the same ids.
        made_up = f"dry-run-{uuid5_text(uuid.NAMESPACE_URL, request.message_id)}"
        return AgentResult(
            request.task_id or made_up, request.context_id or made_up, "dry-run", "dry-run"
        )

    def close(self) -> None:
        pass
