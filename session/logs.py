"""Logs that carry the session id, in the message and as the record's `session_id`."""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any


class SessionLog(logging.LoggerAdapter[logging.Logger]):
    def __init__(self, logger: logging.Logger, session_id: str) -> None:
        super().__init__(logger, {"session_id": session_id})
        self.session_id = session_id

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**kwargs.get("extra", {}), "session_id": self.session_id}
        return f"session {self.session_id}: {msg}", kwargs
