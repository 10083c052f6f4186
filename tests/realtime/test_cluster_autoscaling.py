"""`realtime cluster serve --max-replicas`: Ray Serve's autoscaler adds a replica when the
sessions pass their target and removes one when they fall, and the sessions of the one
it removes are drained as SIGTERM drains the plain server's: `closing`, the frame that
was in the model, then 1001; and so are the last replica's on the command's own SIGTERM."""

from __future__ import annotations

import asyncio
import signal
from contextlib import AsyncExitStack
from pathlib import Path

import pytest
from cluster_sessions import instance, inverted, open_sessions, replica_health
from support import closed_with, eventually
from websockets.exceptions import ConnectionClosed

from frames.codecs import encode_image
from frames.samples import gradient_image
from realtime.bench.harness import running_cluster
from realtime.clients.websocket import Closing, FrameOutput, Message, StreamClient
from session.protocol import CloseCode

# Quick to react, for the test: Serve's defaults wait 30 s to scale up and 600 s down.
AUTOSCALING = ["--max-replicas", "2", "--min-replicas", "1", "--target-sessions", "2"]
for knob in ("upscale_delay_s=0", "downscale_delay_s=2", "look_back_period_s=1"):
    AUTOSCALING += ["--autoscale", knob]
FAST_METRICS = {
    "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
    "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": "0.5",
}


async def stream(
    client: StreamClient, stop: asyncio.Event, sent: int
) -> tuple[int, Closing | None]:
    """Frames in a closed loop, each 0.5 s in the model, until `stop` or until the
    server says `closing`: how many the session was sent (`sent` before), and the
    `closing`."""
    image = encode_image(gradient_image(), "jpeg")
    while not stop.is_set():
        sent += 1
        await client.send_frame(image)
        message = await asyncio.wait_for(client.receive(), 60)
        if isinstance(message, Closing):
            return sent, message
        assert isinstance(message, FrameOutput) and message.source_frame == sent, message
    return sent, None


@pytest.mark.asyncio
async def test_the_autoscaler_adds_a_replica_and_one_it_removes_drains_its_sessions(
    model_cache: Path,
) -> None:
    env = {"REALTIME_CACHE": str(model_cache), "HF_HUB_OFFLINE": "1", **FAST_METRICS}
    args = ["--model", "invert", *AUTOSCALING, "--max-sessions", "4", "--replica-cpus", "0.5"]
    args += ["--decode-threads", "1", "--shutdown-timeout", "10"]
    with running_cluster(*args, env=env, startup_timeout_s=240) as server:
        async with AsyncExitStack() as stack:
            # 3 sessions on the one replica: above the target of 2 each, so a second starts.
            first = await open_sessions(server.ws_url, 3, stack)
            [old] = {instance(client) for client in first}
            for client in first:
                await inverted(client)  # a first frame, or they would be closed as idle
            # Once it is up, the proxy sends requests to it: it has fewer going on.
            await eventually(
                lambda: set(replica_health(server.http_url)) - {old}, "a second replica", 180
            )
            # A new session goes to the replica with room: the new one.
            [late] = await open_sessions(server.ws_url, 1, stack)
            assert instance(late) != old
            await inverted(late)

            # Down to 1 session on each: 2 in all, one replica's worth, so one is removed.
            for client in first[1:]:
                await client.close()
            staying = [first[0], late]
            for client in staying:  # each has had one frame
                await client.update_params(output_format="jpeg", delay_ms=500)
            stop = asyncio.Event()
            streams = [asyncio.create_task(stream(client, stop, sent=1)) for client in staying]
            done, _ = await asyncio.wait(streams, timeout=180, return_when=asyncio.FIRST_COMPLETED)
            stop.set()
            assert done, "no replica was removed"
            results = await asyncio.gather(*streams)
            drains = [
                (client, sent, closing)
                for client, (sent, closing) in zip(staying, results, strict=True)
                if closing is not None
            ]
            assert len(drains) == 1, results  # one replica removed, the other kept
            [(drained, sent, closing)] = drains
            [survivor] = [client for client in staying if client is not drained]
            assert closing.code == "shutting_down"

            # The frame that was in the model when the drain began still comes out (unless
            # `closing` was sent in the instant between two frames: then none was).
            after: list[Message] = []
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    after.append(await asyncio.wait_for(drained.receive(), 30))
            outputs = [output.source_frame for output in after if isinstance(output, FrameOutput)]
            assert outputs in ([sent], []), (sent, after)
            assert closed.value.rcvd is not None
            assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (
                CloseCode.GOING_AWAY,
                "shutting_down",
            )

            # The other replica's session goes on; a new one lands beside it.
            await survivor.update_params(output_format="png", delay_ms=0)
            await inverted(survivor)
            [newcomer] = await open_sessions(server.ws_url, 1, stack)
            assert instance(newcomer) == instance(survivor)
            await inverted(newcomer)
            assert set(replica_health(server.http_url)) == {instance(survivor)}

            # SIGTERM to `realtime cluster serve`: it removes the application, so the
            # last replica drains too, while the proxy still carries its sessions.
            server.process.send_signal(signal.SIGTERM)
            for client in (survivor, newcomer):
                message = await asyncio.wait_for(client.receive(), 60)
                assert isinstance(message, Closing) and message.code == "shutting_down"
                assert await closed_with(client) == (CloseCode.GOING_AWAY, "shutting_down")
            assert await asyncio.to_thread(server.process.wait, 120) == 0
