"""The guard of an open server (no API key) against other sites' pages and DNS rebinding.

With no key, whoever reaches the port may use the server: on 127.0.0.1 that is
this machine, but also every page its browser opens, since a page may open a
WebSocket or post a form to any address without asking. Browsers mark those
requests with the page's `Origin`, and put the name they resolved in `Host`. So
on an open server:

- a WebSocket upgrade, or a request that may act (POST, DELETE, ...), whose
  `Origin` is another site's is refused, unless `--cors-origin` lists it.
  Requests without `Origin` (apps, Python clients, curl) are no page's.
- on a loopback bind, a `Host` that is not a localhost name is refused: a site
  whose name was re-pointed at 127.0.0.1 (DNS rebinding) would be same-origin.

With keys the credentials guard the server instead: a browser never adds a key
or a token to a request by itself, so a page cannot use the server unless it was
given one, whatever its origin.

The same `--cors-origin` list grants those sites CORS (`cors`), with or without
keys: without it a browser lets a page of another origin send the WHIP/WHEP
requests that need a preflight (`application/sdp`, `Authorization`, DELETE) but
keeps their answers from it, so it never sends the offer.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.websockets import WebSocket

from realtime.ice import is_loopback
from realtime.server.responses import error_response
from session.errors import Forbidden

ANY_ORIGIN = "*"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
"""Methods that only read: another site's page cannot read their answers (no CORS
headers), so they pass."""
CORS_METHODS = ("POST", "DELETE", "PATCH", "OPTIONS")
CORS_HEADERS = ("Content-Type", "Authorization", "If-Match")
"""What WHIP/WHEP clients send (RFC 9725): SDP or JSON bodies, a bearer credential,
and `If-Match` on PATCH."""
EXPOSED_HEADERS = ("Location", "Link", "ETag", "Retry-After", "Accept-Post", "Accept-Patch")
"""What they read from answers: the resource to DELETE, ICE servers, the ICE session's
tag, when to retry a 429/503."""


def cors(origins: Sequence[str]) -> list[Middleware]:
    """CORS for pages of `origins` (none: no CORS at all, as before). An origin not
    listed gets no `Access-Control-Allow-Origin`: its preflight is answered 400
    "Disallowed CORS origin", which tells it nothing the docs do not."""
    if not origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=CORS_METHODS,
            allow_headers=CORS_HEADERS,
            expose_headers=EXPOSED_HEADERS,
        )
    ]


def allowed_hosts(bind_host: str) -> tuple[str, ...] | None:
    """The `Host` names a server listening on `bind_host` answers: localhost names (and
    the address itself, e.g. 127.0.0.2) on a loopback bind, any (None) on another (its
    public names are not known here)."""
    address = bind_host.strip("[]").lower()
    # Not for a host name either: whatever it resolves to, other names may reach it.
    return tuple(dict.fromkeys((*LOOPBACK_NAMES, address))) if is_loopback(address) else None


def web_origin(text: str) -> str:
    """`scheme://host[:port]` as browsers send it in `Origin` (lower case, no path), or
    `*` for any; raises ValueError for anything else."""
    if text == ANY_ORIGIN:
        return text
    parts = urlsplit(text.lower().rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
        raise ValueError(f"must be an origin such as https://app.example.com, got {text!r}")
    return f"{parts.scheme}://{parts.netloc}"


class OpenServerGuard:
    """ASGI middleware: refuses, with 403 `forbidden` naming `origin` or `host`, what
    another site's page could send an open server (see the module's doc)."""

    def __init__(
        self, app: ASGIApp, *, origins: Sequence[str], hosts: Sequence[str] | None
    ) -> None:
        self.app = app
        self.origins = frozenset(origins)
        self.hosts = None if hosts is None else frozenset(hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        refusal = self.refusal(scope) if scope["type"] in ("http", "websocket") else None
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":  # an HTTP answer to the upgrade, never accepted
            await WebSocket(scope, receive, send).send_denial_response(error_response(refusal))
        else:
            await error_response(refusal)(scope, receive, send)

    def refusal(self, scope: Scope) -> Forbidden | None:
        headers = Headers(scope=scope)
        host = headers.get("host", "").lower()
        if self.hosts is not None and host and _hostname(host) not in self.hosts:
            return Forbidden(
                f"this server listens on loopback and answers only to"
                f" {', '.join(sorted(self.hosts))}, not to Host {host!r}",
                field="host",
            )
        origin = headers.get("origin")
        acts = scope["type"] == "websocket" or scope["method"] not in SAFE_METHODS
        if acts and origin is not None and not self._allowed(origin.lower(), host):
            return Forbidden(
                f"pages from {origin} may not use this server: with no API key it takes"
                " requests from its own pages and from --cors-origin origins only",
                field="origin",
            )
        return None

    def _allowed(self, origin: str, host: str) -> bool:
        same_origin = origin.partition("://")[2] == host
        return same_origin or origin in self.origins or ANY_ORIGIN in self.origins


def _hostname(host: str) -> str:
    """The name in a `Host` header, without its port: `[::1]:8000` -> `::1`."""
    if host.startswith("["):
        return host[1 : host.find("]")]
    return host.rpartition(":")[0] if ":" in host else host
