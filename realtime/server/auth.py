"""Access: API keys, and short-lived tokens that browsers carry instead of a key.

A key is sent as `Authorization: Bearer KEY` (HTTP, WebSocket, WHIP and WHEP), or
`Authorization: Key KEY` as fal's clients send it. `POST /v1/tokens` trades a key
for a token scoped to one model and a few minutes (`POST /tokens/`, fal's way, to
fal apps: realtime/server/fal.py):
a browser then opens `/v1/stream?model=M&token=T` (or sends it as the Bearer
credential, or as `"token"` in a WebRTC offer) and the key stays on the user's
backend. A URL (`?token=`) may carry a token, never a key. Tokens are
`payload.signature`, both base64url; the signature is an HMAC-SHA256 of the
payload with the server's secret. Credentials are checked when a session
starts: a session is not cut when its token later expires. A session belongs
to the identity that opened it (`Lease.owner`). With no key configured the
server is open, and says so at start.

What each credential may use is docs/protocol.md's "Who may use what" table: a
key everything, a token only what streaming needs (`Scope`).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import orjson

from session.errors import Forbidden, Unauthorized

DEFAULT_TOKEN_TTL_S = 120.0


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a session belongs to: `key_id` names the API key (a hash, never the key)."""

    key_id: str


OPEN = Identity("open")
"""Everyone, on a server with no keys."""


class Scope(Enum):
    """What an endpoint asks of its caller on a server with keys."""

    STREAM = "stream"
    """Sessions, and what a page needs around them: a key, or a token (for the model)."""
    OPERATE = "operate"
    """The operator's endpoints (/metrics, minting tokens): a key; a token is forbidden."""


class Access:
    """The server's keys and token secret."""

    def __init__(self, keys: tuple[str, ...], secret: bytes | None = None) -> None:
        self._keys = {key_id(key): key for key in keys}
        self._secret = secret or secrets.token_bytes(32)

    @property
    def is_open(self) -> bool:
        return not self._keys

    def identify(
        self,
        credential: str | None,
        opens: str | None,
        scope: Scope = Scope.STREAM,
        *,
        in_url: bool = False,
    ) -> Identity:
        """The identity behind a key or a token (one that `opens` this `model_grant` or
        `fal_app_grant`, when one is named), or raise;
        for `Scope.OPERATE`, behind a key only. A credential that came `in_url` must be
        a token: URLs end up in logs and browser histories, and a token expires within
        minutes where a key does not."""
        if self.is_open:
            return OPEN
        if scope is Scope.OPERATE:
            return self.identify_key(credential)
        if not credential:
            raise Unauthorized("an API key or token is required (Authorization: Bearer ...)")
        if in_url and self._is_key(credential):
            raise Unauthorized(
                "an API key must not be sent in a URL: send it as Authorization: Bearer KEY,"
                " or trade it for a short-lived token with POST /v1/tokens and send that"
            )
        return self.identify_key(credential, or_token_for=opens)

    def identify_key(self, credential: str | None, *, or_token_for: str | None = "") -> Identity:
        """The identity of an API key; a token is accepted only when `or_token_for`
        is not "" (None: a token for anything), else it is forbidden."""
        if self.is_open:
            return OPEN
        if not credential:
            raise Unauthorized("an API key is required (Authorization: Bearer KEY)")
        if self._is_key(credential):
            return Identity(key_id(credential))
        if or_token_for != "":
            return self._verify_token(credential, or_token_for)
        self._verify_token(credential, None)  # neither a key nor a token: unauthorized
        raise Forbidden(
            "a token is for streaming only: this needs an API key", field="authorization"
        )

    def _is_key(self, credential: str) -> bool:
        key = self._keys.get(key_id(credential))
        return key is not None and hmac.compare_digest(key, credential)

    def issue_token(
        self, identity: Identity, opens: Sequence[str], ttl_s: float, now: float
    ) -> str:
        """A token for what `opens` names: `model_grant`s or `fal_app_grant`s."""
        claims = {"key": identity.key_id, "opens": list(opens), "exp": now + ttl_s}
        payload = orjson.dumps(claims)
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def _verify_token(self, token: str, opens: str | None) -> Identity:
        try:
            payload_part, signature_part = token.split(".")
            payload = _unb64(payload_part)
            signature = _unb64(signature_part)
        except ValueError:
            raise Unauthorized("not a valid API key or token") from None
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise Unauthorized("not a valid API key or token")
        claims = orjson.loads(payload)
        if claims["exp"] < time.time():
            raise Unauthorized("the token has expired; ask for a new one")
        if opens is not None and opens not in claims["opens"]:
            granted = " or ".join(claims["opens"])
            field = "app" if opens.startswith("fal app") else "model"
            raise Forbidden(f"the token is for {granted}, not {opens}", field=field)
        return Identity(str(claims["key"]))

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()


def key_id(key: str) -> str:
    """A short, stable name for a key, safe to log and to put in tokens."""
    return hashlib.sha256(key.encode()).hexdigest()[:12]


def model_grant(model: str) -> str:
    """What a token names to open sessions of `model` (`POST /v1/tokens`)."""
    return f"model {model!r}"


def fal_app_grant(alias: str) -> str:
    """What a token names to open fal apps of `alias` (the second part of their id;
    `POST /tokens/`): fal tokens and model tokens open nothing of each other's."""
    return f"fal app {alias!r}"


def credential_of(authorization: str | None) -> str | None:
    """The credential of an `Authorization: Bearer ...` or `Authorization: Key ...` header."""
    if authorization:
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() in ("bearer", "key"):
            return credential.strip()
    return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, TypeError) as error:
        raise ValueError(str(error)) from None
