import numpy as np

from frames.geometry import fit


def test_same_size_is_returned_untouched() -> None:
    pixels = np.zeros((256, 256, 3), np.uint8)
    assert fit(pixels, 256, 256) is pixels


def test_wide_frames_lose_their_sides_not_their_shape() -> None:
    # Left and right thirds red, middle third green: a centre crop keeps only green.
    wide = np.zeros((100, 300, 3), np.uint8)
    wide[:, :100, 0] = wide[:, 200:, 0] = 255
    wide[:, 100:200, 1] = 255
    fitted = fit(wide, 50, 50)
    assert fitted.shape == (50, 50, 3)
    assert (fitted[..., 1] == 255).all() and (fitted[..., 0] == 0).all()


def test_tall_frames_lose_top_and_bottom() -> None:
    tall = np.zeros((300, 100, 3), np.uint8)
    tall[100:200] = 200
    fitted = fit(tall, 64, 64)
    assert fitted.shape == (64, 64, 3)
    assert (fitted == 200).all()


def test_upscales_small_frames() -> None:
    assert fit(np.full((10, 20, 3), 7, np.uint8), 256, 128).shape == (128, 256, 3)
