"""Your own models, live (issue 17, item 5): ``catalogue.models`` names a local diffusers
DDPM checkpoint folder beside a zoo model, ``catalogue.sources`` the images its users ask
for; ``testbed run`` serves both with its three node processes."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from testbed.cli import main
from testbed.core.config import ConfigError, build_catalogue, load_config
from testbed.core.errors import CheckpointError, TestbedError
from testbed.live.options import check_live_catalogue
from ue_emulator.requests import checkpoint_size_px
from ue_emulator.server import request_kinds

CHECKPOINT = "my_ddpm"
"""The checkpoint folder's basename: its profile name, and no image source."""


def _model_table(name: str, b1: float, a3: float) -> str:
    """One ``[[model]]`` table as `calibration.sweep.profile_toml` writes it."""
    return "\n".join(
        [
            "[[model]]",
            f'name = "{name}"',
            f"B1 = {b1!r}",
            "B2 = 0.005",
            "r2_latency = 0.98",
            "size_gb = 1.0",
            "[model.quality.tv]",
            "A1 = 1.0",
            "A2 = 27.0",
            f"A3 = {a3!r}",
            "A4 = 4.0",
            "r2 = 0.95",
        ]
    )


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A tiny random-weight 32x32 RGB DDPM, saved in the pipeline layout."""
    from tiny_models import save_tiny_ddpm

    folder = tmp_path_factory.mktemp("own") / CHECKPOINT
    return save_tiny_ddpm(folder, channels=(8, 16), num_train_timesteps=100)


def _scenario(folder: Path, models: list[str], sources: list[str] | None, extra: str = "") -> Path:
    """A profile of brick and the checkpoint, and a small two-model live scenario beside it
    (its ``models`` written as given: relative paths resolve against ``folder``)."""
    folder.mkdir(parents=True, exist_ok=True)
    profile = folder / "profile.toml"
    head = '[meta]\ndevice = "cpu"\ncreated = "2026-12-04T00:00:00+00:00"\n'
    head += 'source = "testbed calibrate"\n[repaint]\njump_length = 10\njump_n_sample = 1\n'
    tables = [_model_table("brick", 0.0117, 2.25), _model_table(CHECKPOINT, 0.012, 2.5)]
    profile.write_text(head + "\n".join(tables) + "\n")
    listed = ", ".join(f'"{m}"' for m in models)
    lines = [
        "seed = 0",
        "[network]",
        "num_users = 2",
        "uplink_bandwidth_hz = 2e6",
        "downlink_bandwidth_hz = 4e6",
        "backhaul_up_rate_bps = 5e6",
        "backhaul_down_rate_bps = 50e6",  # the fill of brick (4.3 MB): 0.7 s
        "input_size_mb = [0.05, 0.1]",
        "[timing]",
        "num_frames = 1",
        "slots_per_frame = 2",
        "slot_duration_s = 0.4",
        "[catalogue]",
        "num_models = 2",
        'profile = "profile.toml"',
        "total_steps = 4",
        "cache_capacity_gb = 20.0",
        "output_size_mb = [0.05, 0.1]",
        "popularity_states = [0.0]",
        "popularity_transition = [[1.0]]",
        f"models = [{listed}]",
        *([f"sources = [{', '.join(repr(s) for s in sources)}]"] if sources is not None else []),
        extra,
        "[utility]",
        "delay_cap_s = 200.0",
    ]
    scenario = folder / "scenario.toml"
    scenario.write_text("\n".join(lines).replace("'", '"') + "\n")
    return scenario


def test_a_checkpoint_model_is_served_live_beside_a_zoo_model(checkpoint, tmp_path) -> None:
    scenario = _scenario(checkpoint.parent, ["brick", f"./{CHECKPOINT}"], ["brick", "text"])
    out = tmp_path / "run"
    # schrs caches the most popular models that fit C: here both (1 GB each, C = 20 GB)
    args = ["run", "--config", str(scenario), "--out", str(out), "--quiet", "--policy", "schrs"]
    assert main(args) == 0
    trace = pd.read_parquet(out / "trace.parquet")
    assert len(trace) == 2 * 2  # 2 slots x 2 users
    assert (trace["failure"] == "").all()
    assert set(trace["service"]) == {0, 1}  # requests of both models
    own = trace[trace["service"] == 1]
    assert own["served_by"].isin(["edge", "cloud"]).all()
    # real RePaint on the checkpoint's UNet, one call per step
    assert (own["unet_calls"] == own["steps_run"]).all() and (own["steps_run"] >= 1).all()
    assert (own["served_by"] == "edge").all() and own["cached"].all()
    # the edge's cache fill copied the checkpoint's safetensors and JSON files from the cloud
    (frame,) = json.loads((out / "summary.json").read_text())["frames"]
    assert frame["applied"] == ["brick", CHECKPOINT]
    sent = [p for p in checkpoint.rglob("*") if p.suffix in (".safetensors", ".json")]
    assert frame["fill_bytes"][CHECKPOINT] == sum(p.stat().st_size for p in sent)


def test_models_resolve_beside_the_scenario_and_pick_sources_and_sizes(checkpoint) -> None:
    scenario = _scenario(checkpoint.parent, ["brick", f"./{CHECKPOINT}"], ["brick", "text"])
    config = load_config(scenario)
    assert config.catalogue.models == ("brick", str(checkpoint.absolute()))
    assert build_catalogue(config.catalogue).names == ("brick", CHECKPOINT)
    assert request_kinds(config) == {"brick": ("brick", 32), CHECKPOINT: ("text", 32)}
    check_live_catalogue(config)  # accepted
    assert checkpoint_size_px(checkpoint) == 32
    assert checkpoint_size_px(checkpoint / "unet") == 32  # the single-folder layout


def test_models_of_the_wrong_length_are_refused(checkpoint) -> None:
    scenario = _scenario(checkpoint.parent / "short", ["brick"], None)
    with pytest.raises(ConfigError, match=r"catalogue.models has 1 entries: allowed none or "):
        load_config(scenario)


def test_sources_of_the_wrong_length_are_refused(checkpoint, tmp_path) -> None:
    scenario = _scenario(tmp_path, ["brick", str(checkpoint)], ["text"])
    with pytest.raises(ConfigError, match=r"catalogue.sources has 1 entries"):
        load_config(scenario)


def test_a_label_that_is_not_the_profiles_name_is_refused(checkpoint, tmp_path) -> None:
    other = tmp_path / "renamed"
    other.symlink_to(checkpoint, target_is_directory=True)
    config = load_config(_scenario(tmp_path / "s", ["brick", str(other)], ["brick", "text"]))
    with pytest.raises(ConfigError, match=r"labelled 'renamed' but the profile's model 1 is 'my_"):
        build_catalogue(config.catalogue)


def test_a_checkpoint_without_a_source_is_refused(checkpoint, tmp_path) -> None:
    config = load_config(_scenario(tmp_path, ["brick", str(checkpoint)], None))
    with pytest.raises(
        ConfigError, match=r"catalogue.profile: models \['my_ddpm'\] are not image sources"
    ):
        check_live_catalogue(config)


def test_a_bad_path_is_refused(tmp_path) -> None:
    scenario = _scenario(tmp_path, ["brick", "./nowhere/my_ddpm"], ["brick", "text"])
    with pytest.raises(ConfigError, match=r"'.*nowhere/my_ddpm' is not a folder: allowed a zoo"):
        load_config(scenario)


def test_a_folder_that_is_no_checkpoint_is_refused(tmp_path) -> None:
    (tmp_path / CHECKPOINT).mkdir()
    config = load_config(_scenario(tmp_path, ["brick", f"./{CHECKPOINT}"], ["brick", "text"]))
    with pytest.raises(CheckpointError, match=r"is not a diffusers DDPM checkpoint folder"):
        check_live_catalogue(config)


def test_a_zoo_entry_that_is_no_zoo_model_is_refused(tmp_path) -> None:
    config = load_config(_scenario(tmp_path, ["brick", CHECKPOINT], ["brick", "text"]))
    with pytest.raises(TestbedError, match=r"\['my_ddpm'\] are not zoo models"):
        check_live_catalogue(config)


def test_a_source_that_is_no_image_source_is_refused(checkpoint, tmp_path) -> None:
    config = load_config(_scenario(tmp_path, ["brick", str(checkpoint)], ["brick", "nope"]))
    with pytest.raises(ConfigError, match=r"catalogue.sources: models \['my_ddpm'\] are not image"):
        request_kinds(config)


def test_a_path_without_a_basename_is_refused(tmp_path) -> None:
    with pytest.raises(ConfigError, match=r"catalogue.models: '/' has no basename"):
        load_config(_scenario(tmp_path, ["brick", "/tmp/.."], ["brick", "text"]))
