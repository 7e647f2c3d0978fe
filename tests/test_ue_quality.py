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


def test_identical_images_score_ssim_1_and_piqs_80_db():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.0, 1.0, size=(2, SIZE_PX, SIZE_PX, 3)).astype(np.float32)
    scores = score_outputs(truth, truth)
    np.testing.assert_allclose(scores.ssim, 1.0, atol=1e-5)
    # piq adds 1e-8 to the MSE: -10 log10(1e-8) = 80 dB, finite
    np.testing.assert_allclose(scores.psnr_db, 80.0, rtol=1e-4)


def test_tv_of_a_constant_image_is_zero():
    assert score_outputs(constant(0.3), constant(0.3)).tv[0] == 0.0


def test_tv_of_a_single_bright_pixel_and_of_a_step_edge():
    dot = constant(0.0)
    dot[0, 8, 8] = 1.0  # 4 unit differences to its neighbours, in each of 3 channels
    edge = constant(0.0)
    edge[0, :, 8:] = 1.0  # one unit difference per row: 16 rows x 3 channels
    images = np.concatenate([dot, edge])
    l2 = score_outputs(images, images).tv
    np.testing.assert_allclose(l2, [np.sqrt(12.0), np.sqrt(48.0)], rtol=1e-6)
    l1 = score_outputs(images, images, tv_norm="l1").tv
    np.testing.assert_allclose(l1, [12.0, 48.0], rtol=1e-6)


def test_psnr_and_ssim_of_constant_images():
    # MSE 0.25 -> PSNR 10 log10(1 / 0.25) = 6.02 dB; an output of 1.5 is clamped to 1: 0 dB
    scores = score_outputs(np.concatenate([constant(0.5), constant(1.5)]), constant(0.0, 2))
    np.testing.assert_allclose(scores.psnr_db, [10 * np.log10(4.0), 0.0], atol=1e-4)
    # flat images: only SSIM's luminance term is left, (2 mx my + C1) / (mx^2 + my^2 + C1)
    c1 = 0.01**2
    flat = score_outputs(constant(0.5), constant(0.25)).ssim[0]
    assert flat == pytest.approx((2 * 0.5 * 0.25 + c1) / (0.5**2 + 0.25**2 + c1), rel=1e-5)


def test_metrics_of_random_pixels_against_a_flat_output():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.0, 1.0, size=(1, 32, 32, 3)).astype(np.float32)
    flat = np.full_like(truth, 0.5)
    scores = score_outputs(np.concatenate([truth, flat]), np.concatenate([truth, truth]))
    assert scores.tv[1] == pytest.approx(0.0, abs=1e-6)
    # l2 TV of i.i.d. U(0,1) pixels: sqrt(2 * 32 * 31 * 3 * E[(a-b)^2] = 1/6) ~ 31.5
    assert scores.tv[0] == pytest.approx(np.sqrt(2 * 32 * 31 * 3 / 6), rel=0.05)
    # MSE of U(0,1) against 0.5 is 1/12: PSNR = 10 log10(12) ~ 10.8 dB
    assert scores.psnr_db[1] == pytest.approx(10 * np.log10(12), abs=0.3)


def test_shapes_must_match():
    with pytest.raises(ValueError, match="NHWC"):
        score_outputs(constant(0.5), constant(0.5, 2))
