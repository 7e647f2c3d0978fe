"""The users' content: held-out sources, seeded requests and masks; no ground truth uploaded."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

pytest.importorskip("skimage")

from ue_emulator.requests import (
    InpaintRequest,
    UserRequest,
    box_mask,
    make_requests,
    stroke_mask,
)
from ue_emulator.sources import load_source


def test_heldout_region_is_disjoint_from_training_region():
    brick = load_source("brick")
    (train,), (heldout,) = brick.train_images, brick.heldout_images
    assert train.shape[0] == heldout.shape[0] == 256
    assert train.shape[1] + heldout.shape[1] == 256
    faces = load_source("faces")
    assert (len(faces.train_images), len(faces.heldout_images)) == (75, 25)
    assert all(image.shape == (32, 32, 3) for image in faces.heldout_images)


def test_requests_are_seeded_heldout_patches_with_binary_masks():
    first, again = make_requests("gravel", 4, seed=5), make_requests("gravel", 4, seed=5)
    other = make_requests("gravel", 4, seed=6)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.ground_truth, b.ground_truth)
        np.testing.assert_array_equal(a.request.masked_image, b.request.masked_image)
        np.testing.assert_array_equal(a.request.mask, b.request.mask)
        assert a.request.seed == b.request.seed
    assert not np.array_equal(first[0].ground_truth, other[0].ground_truth)
    heldout = load_source("gravel").heldout_images[0]
    patch = first[0].ground_truth
    hits = [
        np.array_equal(heldout[r : r + 32, c : c + 32], patch)
        for r in range(heldout.shape[0] - 31)
        for c in range(heldout.shape[1] - 31)
    ]
    assert sum(hits) == 1  # the patch is a crop of the held-out region
    for user in first:
        request = user.request
        assert request.source == "gravel"
        assert set(np.unique(request.mask)) == {0.0, 1.0}
        hole = request.mask == 0
        np.testing.assert_array_equal(request.masked_image[hole], 0.5)
        np.testing.assert_array_equal(request.masked_image[~hole], user.ground_truth[~hole])
        assert request.masked_image.dtype == np.float32


def test_the_upload_carries_no_ground_truth():
    (user,) = make_requests("brick", 1, seed=0)
    assert isinstance(user, UserRequest) and isinstance(user.request, InpaintRequest)
    fields = {field.name for field in dataclasses.fields(InpaintRequest)}
    assert fields == {"masked_image", "mask", "seed", "source"}
    assert not hasattr(user.request, "ground_truth")


def test_requests_draw_what_they_drew_before_the_ground_truth_moved_out():
    # pinned from edge_node.requests before the split: calibration numbers depend on these draws
    users = make_requests("brick", 3, seed=7)
    assert [user.request.seed for user in users] == [1790251936, 483628757, 119253154]
    assert [float(user.request.mask.sum()) for user in users] == [890.0, 920.0, 682.0]
    truth_sums = [float(user.ground_truth.astype(np.float64).sum()) for user in users]
    np.testing.assert_allclose(truth_sums, [1318.29022461, 1357.64977223, 1329.52127434])


def test_mask_shapes_cover_a_sensible_fraction():
    rng = np.random.default_rng(0)
    box_holes = [1 - box_mask(rng).mean() for _ in range(200)]
    stroke_holes = [1 - stroke_mask(rng).mean() for _ in range(200)]
    assert 0.0625 <= min(box_holes) and max(box_holes) <= 0.40
    assert 0.05 < np.mean(stroke_holes) < 0.35


def test_requests_at_another_resolution_for_foreign_checkpoints():
    (user,) = make_requests("faces", 1, seed=0, size_px=64)
    assert user.ground_truth.shape == user.request.masked_image.shape == (64, 64, 3)
    assert user.request.mask.shape == (64, 64)
    assert 0.0 <= user.ground_truth.min() and user.ground_truth.max() <= 1.0
    assert 0.02 < user.request.hole_fraction < 0.5
