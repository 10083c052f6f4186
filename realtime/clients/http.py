"""The clients' HTTP requests (WebRTC signalling, a session's resources), with the
server's error answers raised as ServerError. The standard library's client, in a
thread: a request or two per session needs no HTTP library."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request

import orjson

from realtime.clients.websocket import ServerError
from session.protocol import ErrorMessage, parse_server_message


async def request(
    method: str,
    url: str,
    body: bytes | None = None,
    content_type: str | None = None,
    credential: str | None = None,
) -> tuple[bytes, str]:
    """Send the request; return the answer's body and Location, or raise ServerError."""
    headers = {"Content-Type": content_type} if content_type else {}
    if credential:
        headers["Authorization"] = f"Bearer {credential}"

    def send() -> tuple[bytes, str]:
        sent = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(sent, timeout=60) as response:
                return response.read(), response.headers.get("Location", "")
        except urllib.error.HTTPError as error:
            payload = error.read()
            try:
                details = parse_server_message(orjson.loads(payload))
            except (orjson.JSONDecodeError, ValueError):
                details = ErrorMessage(f"http_{error.code}", payload.decode(errors="replace"))
            if not isinstance(details, ErrorMessage):
                details = ErrorMessage(f"http_{error.code}", repr(details))
            raise ServerError(details, status=error.code) from None

    return await asyncio.to_thread(send)


async def set_reference(
    url: str, session_id: str, image: bytes | None, credential: str | None = None
) -> None:
    """Set session `session_id`'s reference image (JPEG, PNG or WebP; None clears it) on
    the server at `url` (http://HOST:PORT): PUT /v1/sessions/{id}/reference. Raises
    ServerError (invalid_params naming `reference` for an image the model cannot take)."""
    resource = f"{http_url(url)}/v1/sessions/{session_id}/reference"
    if image is None:
        await request("DELETE", resource, credential=credential)
    else:
        await request("PUT", resource, image, "application/octet-stream", credential)


def http_url(url: str) -> str:
    """The server's HTTP address for its WebSocket address (ws:// -> http://)."""
    url = url.rstrip("/")
    for websocket, http in (("ws://", "http://"), ("wss://", "https://")):
        if url.startswith(websocket):
            return http + url.removeprefix(websocket)
    return url
