"""The similarity filter, alone and inside a Session."""

import numpy as np

from frames.frame import Frame
from frames.samples import gradient_image, noise_image
from models.effects import INVERT
from session.session import Session
from session.similarity import MAX_SKIPPED_IN_A_ROW, SimilarityFilter, similarity

PARAMS = {"prompt": "a fox"}


def test_similarity_is_one_for_equal_images_and_falls_with_change() -> None:
    image = gradient_image()
    assert similarity(image, image) == 1.0
    assert similarity(image, 255 - image) < -0.9
    nudged = np.clip(image.astype(int) + 3, 0, 255).astype(np.uint8)
    assert 0.99 < similarity(image, nudged) < 1.0
    assert similarity(image, noise_image()) < 0.5


def test_the_filter_skips_near_copies_until_params_change_or_too_many_in_a_row() -> None:
    still, moved = gradient_image(), gradient_image(seed=1)[::-1].copy()
    similar = SimilarityFilter()
    assert not similar.skips(still, PARAMS, 0.98)  # the first frame becomes the reference
    assert similar.skips(still, PARAMS, 0.98)
    assert not similar.skips(moved, PARAMS, 0.98)  # a different scene
    assert not similar.skips(moved, {"prompt": "an owl"}, 0.98)  # new params show at once
    skipped = [similar.skips(moved, {"prompt": "an owl"}, 0.98) for _ in range(12)]
    assert skipped == [True] * MAX_SKIPPED_IN_A_ROW + [False, True]
    assert not similar.skips(moved, {"prompt": "an owl"}, 0.0)  # off


def test_a_session_counts_skipped_frames_as_dropped_and_reports_them() -> None:
    session = Session("s1", INVERT)
    session.pin()
    session.model_ready()
    session.receive_text(b'{"type": "params", "similarity_filter": 0.98}', 0.0)
    image = gradient_image()
    outputs = []
    for now in range(1, 4):
        index = session.number_frame(float(now))
        session.offer_frame(Frame(image, index, float(now), {"decode": 0.0}))
        if session.next_job() is not None:
            session.finish_job(image, started_at=float(now), model_ms=1.0)
            output = session.next_output()
            assert output is not None
            outputs.append(session.output_message(output))
            session.output_sent(output)
    assert [message["source_frame"] for message in outputs] == [1]
    assert session.stats.skipped_similar == 2
    assert session.dropped_frames == 2
    # The next output's metadata says how many the filter skipped so far.
    session.receive_text(b'{"type": "params", "similarity_filter": 0.5}', 5.0)
    session.offer_frame(Frame(image, session.number_frame(5.0), 5.0, {"decode": 0.0}))
    assert session.next_job() is not None  # params changed: it runs
    session.finish_job(image, started_at=5.0, model_ms=1.0)
    output = session.next_output()
    assert output is not None
    assert session.output_message(output)["skipped_similar"] == 2
