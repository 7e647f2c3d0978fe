"""Zoo loading at the edge: checkpoint layouts, name resolution and the committed manifest."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from edge_node.zoo import (  # noqa: E402
    MODELS_DIR,
    check_checkpoint,
    load_unet_and_scheduler_config,
    read_manifest,
    resolve_model_dir,
    zoo_names,
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
    assert check_checkpoint(str(tmp_path)) == tmp_path  # the input check accepts both layouts


def test_unknown_model_is_an_error():
    with pytest.raises(FileNotFoundError):
        resolve_model_dir("no_such_model_or_folder")


def test_committed_manifest_lists_the_zoo_in_order_and_every_model_loads_by_name():
    assert zoo_names() == [
        "brick", "grass", "gravel", "text", "coins", "chelsea", "coffee",
        "immunohistochemistry", "hubble_deep_field", "faces",
    ]  # fmt: skip
    for entry in read_manifest():
        assert resolve_model_dir(entry.name) == MODELS_DIR / entry.name
        assert entry.parameters == 1_063_651 and entry.resolution_px == 32
        assert entry.heldout_psnr_db is not None and entry.reference_steps == 25
    unet, scheduler_config = load_unet_and_scheduler_config("brick")
    assert sum(p.numel() for p in unet.parameters()) == 1_063_651
    assert scheduler_config["num_train_timesteps"] == 1000


def test_a_missing_manifest_is_an_empty_zoo(tmp_path: Path):
    assert read_manifest(tmp_path / "manifest.json") == []
    assert zoo_names(tmp_path / "manifest.json") == []
