"""ICE settings for every RTCPeerConnection the server (or its client) makes."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

import aioice.ice
from aiortc import RTCConfiguration, RTCIceServer

_GATHERED = aioice.ice.get_host_addresses
"""aioice's own choice of host addresses (every interface but loopback), kept before
`restrict_host_candidates` replaces it."""


@dataclass(frozen=True, slots=True)
class IceServer:
    """A STUN or TURN server, as `--ice-server` names it."""

    url: str
    username: str | None = None
    credential: str | None = None


def rtc_configuration(servers: Sequence[IceServer]) -> RTCConfiguration:
    """The configuration for a new peer connection.

    Always explicit: given no servers, aiortc would fall back to a public STUN
    server of its own choosing, and a self-hosted server must not call out
    unless told to.
    """
    return RTCConfiguration(
        iceServers=[
            RTCIceServer(urls=server.url, username=server.username, credential=server.credential)
            for server in servers
        ]
    )


def restrict_host_candidates(addresses: Sequence[str]) -> None:
    """Offer host candidates on `addresses` only, for every peer connection in this process.

    aioice gathers on every interface but loopback and has no option to choose;
    this replaces its gathering function. Use it to serve on loopback only
    (`--ice-address 127.0.0.1`, as the tests do) or to keep a multi-homed
    server to its public interface.
    """
    chosen = list(addresses)

    def host_addresses(use_ipv4: bool, use_ipv6: bool) -> list[str]:
        return [address for address in chosen if (":" in address and use_ipv6) or use_ipv4]

    aioice.ice.get_host_addresses = host_addresses


def default_host_addresses(listen_host: str) -> tuple[str, ...]:
    """The host candidates of a server listening on `listen_host` when none are chosen:
    aioice's (none here means that), and loopback too when the server listens there.
    Its browsers are then on this machine, which may have no other interface (a
    container, a network namespace): without it WebRTC could not connect at all."""
    if not is_loopback(listen_host):
        return ()
    loopback = "::1" if ":" in listen_host else "127.0.0.1"
    return (*_GATHERED(use_ipv4=True, use_ipv6=True), loopback)


def is_loopback(host: str | None) -> bool:
    """Whether `host` (an address, or "localhost") is this machine's loopback; a host
    name or None is not."""
    if host == "localhost":
        return True
    if host is None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return False
