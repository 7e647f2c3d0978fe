"""Scoring on the users' side: TV, PSNR and SSIM against hand-worked values."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("piq")

from ue_emulator.quality import score_outputs

SIZE_PX = 16  # piq's SSIM needs at least its 11x11 window


def constant(value: float, count: int = 1) -> np.ndarray:
    return np.full((count, SIZE_PX, SIZE_PX, 3), value, dtype=np.float32)


def score(outputs: np.ndarray, truth: np.ndarray, masks: np.ndarray | None = None, **kw):
    """score_outputs with the whole image as the hole unless ``masks`` says otherwise."""
    if masks is None:
        masks = np.zeros(outputs.shape[:3], dtype=np.float32)
    return score_outputs(outputs, truth, masks, **kw)


def test_identical_images_score_ssim_1_and_piqs_80_db():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.0, 1.0, size=(2, SIZE_PX, SIZE_PX, 3)).astype(np.float32)
    scores = score(truth, truth)
    np.testing.assert_allclose(scores.ssim, 1.0, atol=1e-5)
    # piq adds 1e-8 to the MSE: -10 log10(1e-8) = 80 dB, finite
    np.testing.assert_allclose(scores.psnr_db, 80.0, rtol=1e-4)


def test_tv_of_a_constant_image_is_zero():
    assert score(constant(0.3), constant(0.3)).tv[0] == 0.0


def test_tv_of_a_single_bright_pixel_and_of_a_step_edge():
    dot = constant(0.0)
    dot[0, 8, 8] = 1.0  # 4 unit differences to its neighbours, in each of 3 channels
    edge = constant(0.0)
    edge[0, :, 8:] = 1.0  # one unit difference per row: 16 rows x 3 channels
    images = np.concatenate([dot, edge])
    l2 = score(images, images).tv
    np.testing.assert_allclose(l2, [np.sqrt(12.0), np.sqrt(48.0)], rtol=1e-6)
    l1 = score(images, images, tv_norm="l1").tv
    np.testing.assert_allclose(l1, [12.0, 48.0], rtol=1e-6)


def test_psnr_and_ssim_of_constant_images():
    # MSE 0.25 -> PSNR 10 log10(1 / 0.25) = 6.02 dB; an output of 1.5 is clamped to 1: 0 dB
    scores = score(np.concatenate([constant(0.5), constant(1.5)]), constant(0.0, 2))
    np.testing.assert_allclose(scores.psnr_db, [10 * np.log10(4.0), 0.0], atol=1e-4)
    # flat images: only SSIM's luminance term is left, (2 mx my + C1) / (mx^2 + my^2 + C1)
    c1 = 0.01**2
    flat = score(constant(0.5), constant(0.25)).ssim[0]
    assert flat == pytest.approx((2 * 0.5 * 0.25 + c1) / (0.5**2 + 0.25**2 + c1), rel=1e-5)


def test_metrics_of_random_pixels_against_a_flat_output():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.0, 1.0, size=(1, 32, 32, 3)).astype(np.float32)
    flat = np.full_like(truth, 0.5)
    scores = score(np.concatenate([truth, flat]), np.concatenate([truth, truth]))
    assert scores.tv[1] == pytest.approx(0.0, abs=1e-6)
    # l2 TV of i.i.d. U(0,1) pixels: sqrt(2 * 32 * 31 * 3 * E[(a-b)^2] = 1/6) ~ 31.5
    assert scores.tv[0] == pytest.approx(np.sqrt(2 * 32 * 31 * 3 / 6), rel=0.05)
    # MSE of U(0,1) against 0.5 is 1/12: PSNR = 10 log10(12) ~ 10.8 dB
    assert scores.psnr_db[1] == pytest.approx(10 * np.log10(12), abs=0.3)


def test_shapes_must_match():
    with pytest.raises(ValueError, match="NHWC"):
        score(constant(0.5), constant(0.5, 2))


def test_hole_mae_counts_the_hole_only_against_hand_computed_values():
    truth = constant(0.2, 3)
    out = truth.copy()
    masks = np.ones((3, SIZE_PX, SIZE_PX), dtype=np.float32)
    # image 0: a 2x2 hole whose 4 pixels are off by 0.5 in one channel of 3 -> mean 0.5/3
    masks[0, 4:6, 4:6] = 0.0
    out[0, 4:6, 4:6, 0] = 0.7
    out[0, 10, 10] = 1.0  # outside the hole: not counted
    # image 1: a one-pixel hole, output 1.3 clamped to 1.0: |1.0 - 0.2| = 0.8 in 3 channels
    masks[1, 0, 0] = 0.0
    out[1, 0, 0] = 1.3
    # image 2: no hole at all scores 0 whatever the output
    out[2] = 0.9
    scores = score(out, truth, masks)
    np.testing.assert_allclose(scores.hole_mae, [100 * 0.5 / 3, 80.0, 0.0], rtol=1e-6)
    np.testing.assert_array_equal(scores.measure("hole_mae"), scores.hole_mae)
    np.testing.assert_array_equal(scores.measure("tv"), scores.tv)
    with pytest.raises(ValueError, match="allowed"):
        scores.measure("lpips")


def test_hole_mae_of_random_pixels_against_a_flat_fill():
    # E|U - 0.5| = 1/4 for U ~ U(0, 1): 25% of the range
    rng = np.random.default_rng(1)
    truth = rng.uniform(0.0, 1.0, size=(1, 32, 32, 3)).astype(np.float32)
    assert score(np.full_like(truth, 0.5), truth).hole_mae[0] == pytest.approx(25.0, abs=0.8)
