"""Fuzzing the WebRTC signalling of one real `realtime serve --model invert` with
hypothesis: JSON offers (`/v1/webrtc/offer`: any bytes, any JSON, offers with random
fields) and WHIP offers (`/v1/whip`: random text, SDP-shaped lines, a real aiortc offer
with lines dropped, garbled or cut short), and the SDP on which aiortc itself once
crashed. Every bad offer gets a 4xx (or 503) JSON error, never a 500; one still usable
gets its answer, and that session is ended at once.

Afterwards (the last test; tests run in file order) no session is left, memory has not
run away, the log has no ERROR line, and a well-behaved client streaming alongside the
whole time got every frame right (tests/fuzzing.py). The WebSocket has its own:
test_fuzz_websocket.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import fuzzing
import httpx
import pytest
from aiortc import RTCPeerConnection
from hypothesis import event, given
from hypothesis import strategies as st
from support import StartServer

from realtime.bench.harness import ServerProcess

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def server(start_server: StartServer) -> ServerProcess:
    return fuzzing.start_fuzzed_server(start_server)


@pytest.fixture(scope="module")
def watch(server: ServerProcess, real_offer: str) -> Iterator[fuzzing.Watch]:
    """Warm the signalling paths (a JSON offer, a WHIP offer) once, then watch the server."""

    def warm_up() -> None:
        with httpx.Client(base_url=server.http_url, timeout=fuzzing.REPLY_TIMEOUT_S) as http:
            check_signalling_answer(
                http, http.post("/v1/webrtc/offer", content=b"{}", headers=JSON)
            )
            check_signalling_answer(http, post_whip(http, real_offer))

    yield from fuzzing.watching(server, warm_up)


@pytest.fixture(scope="module")
def real_offer() -> str:
    """A real aiortc offer (a video transceiver and the control channel), to mutate."""

    async def make() -> str:
        pc = RTCPeerConnection()
        pc.addTransceiver("video", direction="sendrecv")
        pc.createDataChannel("control")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = str(pc.localDescription.sdp)
        await pc.close()
        return sdp

    return asyncio.run(make())


SDP_KEYS = st.sampled_from([*"vosctmabcik", "a=rtpmap", "a=fmtp", "a=ssrc", "a=candidate"])


@st.composite
def sdp_like(draw: st.DrawFn) -> str:
    """Text that passes the server's first look at an offer (v=0 ... m=) and goes on
    to aiortc's parser: SDP-shaped lines with random values."""
    lines = ["v=0"]
    for _ in range(draw(st.integers(1, 12))):
        key = draw(SDP_KEYS)
        value = draw(
            st.sampled_from(
                [
                    "video 9 UDP/TLS/RTP/SAVPF 96",
                    "audio 9 RTP/AVP 0",
                    "application 9 UDP/DTLS/SCTP webrtc-datachannel",
                    "96 VP8/90000",
                    "ice-ufrag:abcd",
                    "ice-pwd:abcdefghijklmnopqrstuvwx",
                    "setup:actpass",
                    "mid:0",
                    "",
                ]
            )
            | st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=40)
        )
        separator = ":" if key.startswith("a=") else "=" if len(key) == 1 else ""
        lines.append(f"{key}{separator}{value}")
    if not any(line.startswith("m=") for line in lines):
        lines.insert(draw(st.integers(1, len(lines))), "m=" + draw(st.text(max_size=30)))
    newline = draw(st.sampled_from(["\r\n", "\n"]))
    return newline.join(lines) + newline


@st.composite
def mutated_offers(draw: st.DrawFn, offer: str) -> str:
    """A real offer with lines dropped, lines garbled, or cut short."""
    lines = offer.split("\r\n")
    for _ in range(draw(st.integers(0, 4))):
        index = draw(st.integers(0, len(lines) - 1))
        if draw(st.booleans()):
            del lines[index]
        else:
            lines[index] = lines[index][: draw(st.integers(0, len(lines[index])))] + draw(
                st.text(st.characters(codec="utf-8", exclude_characters="\r\n"), max_size=10)
            )
        if not lines:
            break
    text = "\r\n".join(lines)
    return text[: draw(st.integers(0, len(text)))] if draw(st.booleans()) else text


def offer_texts(offer: str) -> st.SearchStrategy[str]:
    return st.one_of(st.text(max_size=200), sdp_like(), mutated_offers(offer))


def post_whip(http: httpx.Client, sdp: str | bytes) -> httpx.Response:
    return http.post(
        "/v1/whip?model=invert", content=sdp, headers={"Content-Type": "application/sdp"}
    )


def check_signalling_answer(http: httpx.Client, response: httpx.Response) -> int:
    """A bad offer gets a 4xx (or 503) JSON error, never a 500. A mutated offer that
    is still usable SDP gets its answer: that session is ended at once."""
    status = response.status_code
    if status in (200, 201):
        if status == 201:
            assert response.headers["Content-Type"].startswith("application/sdp")
            session_id = response.headers["Location"].rsplit("/", 1)[1]
            answer = response.text
        else:
            body = response.json()
            session_id, answer = body["session_id"], body["sdp"]
        assert answer.startswith("v=0"), answer
        assert http.delete(f"/v1/whip/{session_id}").status_code == 200
        return status
    assert 400 <= status < 500 or status == 503, (status, response.text)
    body = response.json()
    assert body["type"] == "error", body
    assert isinstance(body["code"], str) and isinstance(body["message"], str), body
    return status


@pytest.fixture(scope="module")
def http(server: ServerProcess, watch: fuzzing.Watch) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.http_url, timeout=fuzzing.REPLY_TIMEOUT_S) as client:
        yield client


@fuzzing.FUZZ
@given(data=st.data())
def test_bad_json_offers_get_4xx_json_errors(
    http: httpx.Client, real_offer: str, data: st.DataObject
) -> None:
    sdp = offer_texts(real_offer) | fuzzing.json_values()
    offers = st.fixed_dictionaries(
        {"type": st.just("offer") | fuzzing.json_values(), "sdp": sdp},
        optional={
            "model": st.just("invert") | fuzzing.json_values(),
            "params": fuzzing.params_messages() | fuzzing.json_values(),
        },
    )
    body = data.draw(
        st.one_of(
            st.binary(max_size=300),
            fuzzing.json_values().map(lambda value: json.dumps(value).encode()),
            offers.map(lambda offer: json.dumps(offer).encode()),
        )
    )
    response = http.post("/v1/webrtc/offer", content=body, headers=JSON)
    event(f"HTTP {check_signalling_answer(http, response)}")


@fuzzing.FUZZ
@given(data=st.data())
def test_bad_whip_offers_get_4xx_json_errors(
    http: httpx.Client, real_offer: str, data: st.DataObject
) -> None:
    body = data.draw(st.one_of(offer_texts(real_offer).map(str.encode), st.binary(max_size=300)))
    event(f"HTTP {check_signalling_answer(http, post_whip(http, body))}")


ICE = "a=ice-ufrag:abcd\r\na=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
DTLS = "a=fingerprint:sha-256 " + ":".join(["AB"] * 32) + "\r\na=setup:actpass\r\n"
VP8 = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtpmap:96 VP8/90000\r\na=rtcp-mux\r\n"
AIORTC_CRASHERS = {
    # What the fuzzing found: SDP on which aiortc raises something other than
    # ValueError (a 500 before), or on which its close() then fails too (a session
    # slot leaked before: the peer's close stopped half-way).
    "m-line-unparsed": "v=0\r\nm=\r\n",  # AssertionError
    "bad-connection-address": "v=0\r\nc=\r\nm=video 9 RTP/AVP 96\r\n",  # AssertionError
    "rtpmap-without-clock-rate": (  # IndexError
        "v=0\r\nm=audio 9 RTP/AVP 0\r\na=rtpmap:0 PCMU\r\n"
    ),
    "fmtp-for-unknown-payload": (  # RuntimeError: coroutine raised StopIteration
        "v=0\r\nm=video 9 RTP/AVP 96\r\na=fmtp:97 x=1\r\n"
    ),
    "no-dtls": f"v=0\r\n{VP8}{ICE}",  # AttributeError
    "bundle-names-a-missing-mid": (  # AttributeError in createAnswer, then in close()
        "v=0\r\na=group:BUNDLE 0 1\r\n"
        f"m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:1\r\n{ICE}{DTLS}"
    ),
}


@pytest.mark.parametrize("endpoint", ["whip", "offer"])
@pytest.mark.parametrize("sdp", AIORTC_CRASHERS.values(), ids=AIORTC_CRASHERS.keys())
def test_offers_that_trip_aiortc_are_bad_offers(
    server: ServerProcess, http: httpx.Client, endpoint: str, sdp: str
) -> None:
    before = fuzzing.sessions(server)  # the bystander's
    if endpoint == "whip":
        response = post_whip(http, sdp)
    else:
        response = http.post("/v1/webrtc/offer", json={"type": "offer", "sdp": sdp})
    assert response.status_code == 400, response.text
    body = response.json()
    assert (body["code"], body["field"]) == ("bad_offer", "sdp")
    assert body["message"].startswith("not a usable SDP offer: ")
    assert fuzzing.sessions(server) == before  # its slot was given back before the answer


# The aftermath


def test_after_the_fuzzing_nothing_leaked_and_the_bystander_was_served(
    server: ServerProcess, watch: fuzzing.Watch
) -> None:
    fuzzing.check_aftermath(server, watch)
