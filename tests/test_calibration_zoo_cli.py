"""The `zoo` command (registered by `calibration.cli`) in a scratch zoo, and import hygiene:
registration is torch-free, the edge imports nothing of the users' side or calibration, and
the users' side imports nothing of the edge."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from calibration.cli import register


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def modules_after_import(*modules: str) -> set[str]:
    """Top-level packages loaded by importing `modules` in a fresh interpreter."""
    code = f"import sys\nimport {', '.join(modules)}\nprint(' '.join(sys.modules))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in out.stdout.split()}


def test_registering_the_commands_does_not_import_torch():
    code = (
        "import argparse, sys\n"
        "import calibration.cli\n"
        "sub = argparse.ArgumentParser().add_subparsers()\n"
        "calibration.cli.register(sub)\n"
        "print(sorted(sub.choices), 'torch' in sys.modules, 'diffusers' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["['calibrate',", "'zoo']", "False", "False"]


def test_serving_and_scoring_sides_import_only_what_they_may():
    edge = modules_after_import("edge_node", "edge_node.zoo", "edge_node.executor")
    assert not edge & {"ue_emulator", "calibration", "agents", "torch"}
    users = modules_after_import(
        "ue_emulator.sources", "ue_emulator.requests", "ue_emulator.quality"
    )
    assert not users & {"edge_node", "calibration", "agents", "testbed", "torch"}
    assert "torch" not in modules_after_import("calibration.zoo_training", "calibration.evaluation")


def test_train_writes_model_and_manifest_then_list_prints_it(tmp_path: Path, capsys):
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    zoo = ["zoo", "--zoo-dir", str(tmp_path)]
    args = parse(
        [*zoo, "train", "--source", "text", "--steps", "3", "--seed", "4", "--eval-images", "2"]
    )
    assert args.handler(args) == 0
    (entry,) = json.loads((tmp_path / "manifest.json").read_text())["models"]
    assert entry["name"] == "text" and entry["training_steps"] == 3
    assert entry["seed"] == 4 + 3  # text is model 3 of the zoo (0-based)
    assert entry["parameters"] == 1_063_651
    weights = tmp_path / "models" / "text" / "unet" / "diffusion_pytorch_model.safetensors"
    assert entry["size_on_disk_bytes"] > weights.stat().st_size > 4_000_000
    assert 5.0 < entry["heldout_psnr_db"] < 60.0
    capsys.readouterr()
    args = parse([*zoo, "list"])
    assert args.handler(args) == 0
    header, row = capsys.readouterr().out.splitlines()
    assert header.split()[:2] == ["name", "params"]
    assert row.split()[:3] == ["text", "1,063,651", "3"]


def test_list_of_an_empty_zoo_fails(tmp_path: Path, capsys):
    args = parse(["zoo", "--zoo-dir", str(tmp_path), "list"])
    assert args.handler(args) == 1
    assert "zoo train" in capsys.readouterr().out


def test_testbed_cli_dispatches_the_zoo_and_calibrate_commands(capsys):
    from testbed.cli import main

    assert main(["zoo", "list"]) == 0
    assert capsys.readouterr().out.splitlines()[1].startswith("brick ")
    with pytest.raises(SystemExit):
        main(["calibrate", "--help"])
    assert "--measurements" in capsys.readouterr().out
