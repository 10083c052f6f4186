"""A program written for fal's realtime API with fal's own Python client, run by
test_python_client.py in a child process, as a user runs one: `fal_client` reads
its host (FAL_RUN_HOST), its key (FAL_KEY) and, through httpx and websockets, the
certificates it trusts (SSL_CERT_FILE) from the environment, the host when it is
imported.

stdin, a JSON plan:
    {"rest_url": URL (where token mode asks for its token: fal_client.client.REST_URL),
     "sessions": [{"app": ID, "use_jwt": bool, "max_buffering": N, "token": T,
                   "steps": [{"send": {input: value, "image_file": PATH}},
                             {"receive": true, "until": ID}]}]}
    ("max_buffering", "token": optional, null for none; "image_file": the file's bytes as
    image_bytes; "until": optional, receive on up to the result of request ID)
stdout, JSON: for each session, what each receive got: {"result": MAP} (bytes as
base64), {"error": CODE, "reason": TEXT, ...} (a RealtimeError's, with the rest of
its frame: "field", "request_id"), or
{"end": true} (the server closed the session normally).
"""

from __future__ import annotations

import base64
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fal_client
import fal_client.client
from fal_client.client import RealtimeConnection, RealtimeError


@dataclass(frozen=True)
class TokenFromBackend(fal_client.SyncClient):
    """A client with a token from the app's own backend, where fal's JS client has a
    `tokenProvider`: the Python client has no such option, only this method."""

    token: str = ""

    def _get_realtime_token(self, application: str, *, token_expiration: int = 120) -> str:
        return self.token


def run_session(session: dict[str, Any]) -> list[dict[str, Any]]:
    token = session.get("token")
    realtime = TokenFromBackend(token=token).realtime if token else fal_client.realtime
    replies: list[dict[str, Any]] = []
    with realtime(
        session["app"], use_jwt=session["use_jwt"], max_buffering=session.get("max_buffering")
    ) as connection:
        for step in session["steps"]:
            if "send" in step:
                request = dict(step["send"])
                if "image_file" in request:
                    request["image_bytes"] = Path(request.pop("image_file")).read_bytes()
                connection.send(request)
                continue
            replies.append(receive(connection))
            while "until" in step and before(replies[-1], step["until"]):
                replies.append(receive(connection))
    return replies


def before(reply: dict[str, Any], request_id: object) -> bool:
    """Another request's result: the one of `request_id` is still to come."""
    return "result" in reply and reply["result"].get("request_id") != request_id


def receive(connection: RealtimeConnection) -> dict[str, Any]:
    try:
        result = connection.recv()
    except RealtimeError as error:  # an x-fal-error frame; the session goes on
        return {**error.payload, "error": error.error, "reason": error.reason}
    return {"end": True} if result is None else {"result": result}


def main() -> None:
    plan = json.load(sys.stdin)
    if "rest_url" in plan:  # where token mode asks for its token: there is no setting
        fal_client.client.REST_URL = plan["rest_url"]
    replies = [run_session(session) for session in plan["sessions"]]
    json.dump(replies, sys.stdout, default=lambda data: base64.b64encode(data).decode())


if __name__ == "__main__":
    main()
