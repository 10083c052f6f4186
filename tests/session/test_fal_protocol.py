"""session/fal_protocol.py: what a fal request asks of a session, without a server."""

from __future__ import annotations

import base64

import pytest

from session.errors import StreamError
from session.fal_protocol import parse_request, result


def test_fal_names_map_to_this_servers_params_and_demo_only_inputs_are_dropped() -> None:
    request = parse_request(
        {
            "prompt": "a cat",
            "num_inference_steps": 3,
            "format": "png",
            "strength": 0.6,
            "seed": None,  # fal's clients send nil for an input left out
            "sync_mode": True,
            "model_name": "runwayml/stable-diffusion-v1-5",
            "image_size": "square",
            "num_images": 1,
            "image_url": "data:image/jpeg;base64," + base64.b64encode(b"\xff\xd8").decode(),
            "request_id": "abc",
        }
    )
    assert request.params == {
        "prompt": "a cat",
        "steps": 3,
        "output_format": "png",
        "strength": 0.6,
    }
    assert (request.image, request.request_id) == (b"\xff\xd8", "abc")


def test_a_request_without_an_image_asks_for_one_from_its_params() -> None:
    assert parse_request({"prompt": "x"}).image is None


@pytest.mark.parametrize(
    ("request_map", "field"),
    [
        ({"image_url": "data:image/png,raw"}, "image_url"),  # not base64
        ({"image_bytes": 12}, "image_bytes"),
        ({"num_images": 4}, "num_images"),
        ({1: "a"}, None),
    ],
)
def test_bad_inputs_name_their_field(request_map: dict[object, object], field: str) -> None:
    with pytest.raises(StreamError) as refused:
        parse_request(request_map)
    assert refused.value.field == field


def test_a_result_carries_the_image_timings_in_seconds_and_the_request_id() -> None:
    frame = {"source_frame": 4, "timings_ms": {"model": 12.5}, "dropped_frames": 2}
    mapped = result(b"jpeg", "jpeg", (512, 256), frame, 7, "r4")
    assert mapped == {
        "images": [{"content": b"jpeg", "content_type": "image/jpeg", "width": 512, "height": 256}],
        "timings": {"model": 0.0125},
        "frame": 4,
        "dropped_frames": 2,
        "seed": 7,
        "request_id": "r4",
    }
