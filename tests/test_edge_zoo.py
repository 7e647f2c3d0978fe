"""Zoo plumbing: checkpoint round trips, the architecture, the manifest, sources and requests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from edge_node.requests import box_mask, make_requests, stroke_mask  # noqa: E402
from edge_node.sources import PATCH_SIZE_PX, load_source  # noqa: E402
from edge_node.zoo import (  # noqa: E402
    ZooEntry,
    build_unet,
    load_unet_and_scheduler_config,
    read_manifest,
    resolve_model_dir,
    write_manifest,
)


def tiny_unet() -> diffusers.UNet2DModel:
    torch.manual_seed(3)
    return diffusers.UNet2DModel(
        sample_size=16,
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 16),
        layers_per_block=1,
        norm_num_groups=4,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )


def predict(unet: diffusers.UNet2DModel) -> torch.Tensor:
    x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return unet(x, torch.tensor([10, 500])).sample


@pytest.mark.parametrize("layout", ["pipeline", "flat"])
def test_checkpoint_round_trip(tmp_path: Path, layout: str):
    unet = tiny_unet()
    scheduler = diffusers.DDPMScheduler(num_train_timesteps=1000, beta_end=0.015)
    if layout == "pipeline":  # what the zoo writes: unet/ + scheduler/ + model_index.json
        diffusers.DDPMPipeline(unet=unet, scheduler=scheduler).save_pretrained(tmp_path)
        assert (tmp_path / "unet" / "diffusion_pytorch_model.safetensors").is_file()
    else:  # a single-folder DDPM checkpoint, as many hub DDPMs are laid out
        unet.save_pretrained(tmp_path)
        scheduler.save_config(tmp_path)
    loaded, scheduler_config = load_unet_and_scheduler_config(tmp_path)
    torch.testing.assert_close(predict(loaded), predict(unet), rtol=0, atol=0)
    assert scheduler_config["beta_end"] == 0.015
    assert resolve_model_dir(str(tmp_path)) == tmp_path


def test_unknown_model_is_an_error():
    with pytest.raises(FileNotFoundError):
        resolve_model_dir("no_such_model_or_folder")


def test_zoo_architecture_has_1_06_million_parameters():
    unet = build_unet()
    assert sum(p.numel() for p in unet.parameters()) == 1_063_651
    assert unet.config.sample_size == PATCH_SIZE_PX


def test_manifest_round_trip_keeps_zoo_order(tmp_path: Path):
    path = tmp_path / "manifest.json"
    entries = [
        ZooEntry("text", "t", 32, 10, 5, 1.0, 0.1, 123, 3),
        ZooEntry("brick", "b", 32, 10, 5, 1.0, 0.2, 456, 0, heldout_psnr_db=30.5),
    ]
    write_manifest(entries, path)
    assert read_manifest(path) == [entries[1], entries[0]]  # brick comes before text


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
        np.testing.assert_array_equal(a.mask, b.mask)
        assert a.seed == b.seed
    assert not np.array_equal(first[0].ground_truth, other[0].ground_truth)
    heldout = load_source("gravel").heldout_images[0]
    patch = first[0].ground_truth
    hits = [
        np.array_equal(heldout[r : r + 32, c : c + 32], patch)
        for r in range(heldout.shape[0] - 31)
        for c in range(heldout.shape[1] - 31)
    ]
    assert sum(hits) == 1  # the patch is a crop of the held-out region
    for request in first:
        assert set(np.unique(request.mask)) == {0.0, 1.0}
        hole = request.mask == 0
        np.testing.assert_array_equal(request.masked_image[hole], 0.5)


def test_mask_shapes_cover_a_sensible_fraction():
    rng = np.random.default_rng(0)
    box_holes = [1 - box_mask(rng).mean() for _ in range(200)]
    stroke_holes = [1 - stroke_mask(rng).mean() for _ in range(200)]
    assert 0.0625 <= min(box_holes) and max(box_holes) <= 0.40
    assert 0.05 < np.mean(stroke_holes) < 0.35


def test_zoo_model_inpaints_its_own_source_better_than_random_weights(tmp_path: Path):
    from diffusers import DDPMPipeline

    from edge_node.evaluation import mean_psnr_db
    from edge_node.executor import RePaintExecutor
    from edge_node.zoo import build_scheduler

    torch.manual_seed(0)
    DDPMPipeline(unet=build_unet(), scheduler=build_scheduler()).save_pretrained(tmp_path)
    executor = RePaintExecutor(device="cpu")
    trained_db = mean_psnr_db(executor, "brick", "brick", images=4, steps=8, seed=99)
    random_db = mean_psnr_db(executor, tmp_path, "brick", images=4, steps=8, seed=99)
    # measured: ~31 dB vs ~18 dB; the masks keep ~80% of the pixels exactly in both
    assert trained_db > 27.0
    assert trained_db - random_db > 6.0


def test_requests_at_another_resolution_for_foreign_checkpoints():
    (request,) = make_requests("faces", 1, seed=0, size_px=64)
    assert request.ground_truth.shape == (64, 64, 3)
    assert request.mask.shape == (64, 64)
    assert 0.0 <= request.ground_truth.min() and request.ground_truth.max() <= 1.0
    assert 0.02 < request.hole_fraction < 0.5


def test_training_is_seeded(tmp_path: Path):
    from safetensors.torch import load_file

    from edge_node.zoo import TrainConfig, train_model

    weights = "unet/diffusion_pytorch_model.safetensors"
    first = train_model(TrainConfig("coins", seed=1, max_steps=2), tmp_path / "a", progress=False)
    again = train_model(TrainConfig("coins", seed=1, max_steps=2), tmp_path / "b", progress=False)
    other = train_model(TrainConfig("coins", seed=2, max_steps=2), tmp_path / "c", progress=False)
    assert first.final_loss == again.final_loss != other.final_loss
    a, b = load_file(tmp_path / "a" / weights), load_file(tmp_path / "b" / weights)
    assert all(torch.equal(a[name], b[name]) for name in a)
    with pytest.raises(ValueError, match="max_steps"):
        train_model(TrainConfig("coins", max_steps=0), tmp_path / "d", progress=False)
