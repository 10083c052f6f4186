"""A passthrough fastrtc video stream on a FastAPI app, served by uvicorn on loopback.

    PEER_VENV/bin/python benchmarks/peers/fastrtc_server.py --port 8081

Run by `python -m benchmarks.peers` with the peer venv's python (fastrtc from
PyPI), never with the project's. `Stream(handler=lambda frame: frame,
modality="video", mode="send-receive")`, mounted with `Stream.mount`, which adds
`POST /webrtc/offer` taking `{"sdp", "type", "webrtc_id"}` and answering
`{"sdp", "type"}`.

fastrtc calls the handler only once the session has inputs (until then it
returns each camera frame as it came); its web UI sets them, and apps do it
with an "input hook" route calling `Stream.set_input`, which is what
`POST /input_hook {"webrtc_id"}` here does. Its video track also waits for a
data channel before its first frame: the client opens one.

Kept off the network: no ICE servers on the server's peer connections
(`server_rtc_configuration`), host candidates on 127.0.0.1 only, Gradio's
analytics off (building the Stream's UI would otherwise fetch Gradio's
latest version number), Hugging Face Hub offline, no TURN credentials asked
for, no `fastphone()`.
"""

from __future__ import annotations

import argparse
import os

for name, value in {
    "GRADIO_ANALYTICS_ENABLED": "False",
    "HF_HUB_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "DO_NOT_TRACK": "1",
}.items():
    os.environ[name] = value

import aioice.ice  # noqa: E402
import uvicorn  # noqa: E402
from fastapi import FastAPI  # noqa: E402
from fastrtc import Stream  # noqa: E402
from pydantic import BaseModel  # noqa: E402

# aioice gathers on every interface but loopback; offer 127.0.0.1 only.
aioice.ice.get_host_addresses = lambda use_ipv4, use_ipv6: ["127.0.0.1"]


class InputHook(BaseModel):
    webrtc_id: str


def build_app() -> FastAPI:
    stream = Stream(
        handler=lambda frame: frame,
        modality="video",
        mode="send-receive",
        rtc_configuration={"iceServers": []},
        server_rtc_configuration={"iceServers": []},
        verbose=False,
    )
    app = FastAPI()
    stream.mount(app)

    # FastAPI is typed where the cluster extra (Ray Serve) brings it, else Any to mypy.
    @app.post("/input_hook")  # type: ignore[untyped-decorator,unused-ignore]
    async def input_hook(body: InputHook) -> dict[str, str]:
        # The handler's one argument is the frame; fastrtc puts it in place of the first input.
        stream.set_input(body.webrtc_id, None)
        return {"status": "ok"}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=8081)
    args = parser.parse_args()
    uvicorn.run(build_app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
