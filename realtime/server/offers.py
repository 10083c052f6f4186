"""Bounding a WebRTC offer before aiortc sees it.

aiortc parses an offer on the event loop and compares each remote ICE candidate
with every one before it, then sends STUN checks to each: an offer with 10,000
candidates froze every session for tens of seconds, and a peer could make the
server send to any address and port it named. `bounded_offer` runs in a thread
(its cost is linear in the offer) and hands on an offer of bounded size:

- at most MAX_MEDIA_SECTIONS m= sections, else BadOffer (a session needs video, a
  data channel, perhaps audio);
- only candidates plausible for the peer (`plausible_candidate`), at most
  MAX_CANDIDATES_PER_SECTION per m= section: the others are dropped, as a browser
  ignores candidates it cannot use (browsers list more than a server can reach:
  TCP ones, one per network interface);
- at most MAX_OFFER_LINES lines then, else BadOffer: aiortc's work on the rest
  of an offer (codecs and their parameters) grows with its lines.
"""

from __future__ import annotations

import ipaddress

from aioice.mdns import is_mdns_hostname

from realtime.ice import is_loopback
from session.errors import BadOffer

MAX_MEDIA_SECTIONS = 4
MAX_CANDIDATES_PER_SECTION = 8
MAX_OFFER_LINES = 1000
"""A browser's offer for audio, video and a data channel has about 200."""
CANDIDATE = "a=candidate:"
CANDIDATE_TYPES = frozenset({"host", "srflx", "prflx", "relay"})


def bounded_offer(sdp: str, peer_address: str | None) -> tuple[str, int]:
    """The offer `sdp` as aiortc may parse it, and how many candidates were dropped;
    BadOffer (field `sdp`) when it is not SDP or is over a limit.

    `peer_address` is the HTTP client's address: loopback candidates are plausible
    only when it is loopback too."""
    # aiortc splits lines as splitlines() does: so does this, so both see the same lines.
    lines = sdp.splitlines()
    if not lines or not lines[0].startswith("v=0"):
        raise BadOffer("not a usable SDP offer: expected SDP, starting with v=0", field="sdp")
    sections = sum(line.startswith("m=") for line in lines)
    if not 1 <= sections <= MAX_MEDIA_SECTIONS:
        raise BadOffer(
            f"an offer must have 1 to {MAX_MEDIA_SECTIONS} media sections (m= lines);"
            f" this one has {sections}",
            field="sdp",
        )
    loopback_peer = is_loopback(peer_address)
    kept: list[str] = []
    in_media, in_section, dropped = False, 0, 0
    for line in lines:
        if line.startswith("m="):
            in_media, in_section = True, 0
        elif line.startswith(CANDIDATE):
            # Candidates outside an m= section mean nothing: aiortc ignores them.
            wanted = in_media and in_section < MAX_CANDIDATES_PER_SECTION
            if not (wanted and plausible_candidate(line[len(CANDIDATE) :], loopback_peer)):
                dropped += 1
                continue
            in_section += 1
        kept.append(line)
    if len(kept) > MAX_OFFER_LINES:
        raise BadOffer(
            f"an offer may have at most {MAX_OFFER_LINES} lines besides the candidates"
            f" dropped; this one has {len(kept)}",
            field="sdp",
        )
    return "\r\n".join(kept) + "\r\n", dropped


def plausible_candidate(candidate: str, loopback_peer: bool) -> bool:
    """Whether the server may send its STUN checks to this candidate (RFC 8839's
    `foundation component transport priority address port typ type ...`): UDP, a
    known type, a port from 1024 up, and a unicast address or an mDNS name (what
    browsers put in place of their local address; aioice resolves it on the local
    link). Loopback only when the peer itself is on loopback."""
    fields = candidate.split()
    if len(fields) < 8 or fields[6] != "typ":
        return False
    _, component, transport, priority, address, port, _, kind = fields[:8]
    if transport.lower() != "udp" or kind not in CANDIDATE_TYPES:
        return False
    if not (component.isdecimal() and priority.isdecimal() and port.isdecimal()):
        return False
    if not 1024 <= int(port) <= 65535:
        return False
    if is_mdns_hostname(address):
        return True
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if ip.is_loopback:
        return loopback_peer
    # Reserved: IPv4's 240/4 (broadcast too), IPv6's ::/8 (IPv4-mapped too) and more.
    return not (ip.is_unspecified or ip.is_multicast or ip.is_link_local or ip.is_reserved)
