"""`calibrate` and `zoo` check every input before they write anything.

Each row of `CASES` is a concrete bad input and a fragment of the one-line error it must give;
for every row the handler raises a `TestbedError` (`testbed` prints it as one line, exit 2),
the --out folder is never created, and neither the shipped manifest nor the scratch zoo's copy
of it changes. Placeholders in braces are files made by the `inputs` fixture; zoo commands
only ever get a scratch `--zoo-dir`.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from calibration.cli import register  # noqa: E402
from edge_node.zoo import MANIFEST_PATH, MODELS_DIR, ZooEntry, read_manifest  # noqa: E402
from testbed.core.errors import CheckpointError, TestbedError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MEASUREMENTS = ROOT / "calibration" / "profiles" / "cpu_zoo" / "measurements.csv"
COMMITTED_PROFILE = ROOT / "calibration" / "profiles" / "cpu_zoo.toml"
SHIPPED_MANIFEST_BYTES = MANIFEST_PATH.read_bytes()

CASES: list[tuple[str, str]] = [
    # calibrate: models
    ("calibrate --models no_such_model --out {out}", "no_such_model is neither a zoo model (b"),
    ("calibrate --models {not_ddpm} --out {out}", "not a diffusers DDPM checkpoint folder: config"),
    ("calibrate --models {truncated} --out {out}", "diffusion_pytorch_model.safetensors is trunc"),
    ("calibrate --models brick,brick --out {out}", "--models brick,brick: brick is listed twice"),
    ("calibrate --models brick,{brick} --out {out}", "would both be profiled as 'brick'"),
    ("calibrate --models {brick} --mismatch --out {out}", "--mismatch needs zoo models"),
    ("calibrate --source nope --out {out}", "--source nope: unknown; allowed: brick, grass"),
    # calibrate: the step grid and the fits it must allow
    ("calibrate --steps=-1,2,3 --out {out}", "--steps -1,2,3: step counts must be >= 0, got -1"),
    ("calibrate --steps 1,2 --out {out}", "need at least 3 distinct step counts >= 1, got 2"),
    ("calibrate --steps 0,1,2 --out {out}", "need at least 3 distinct step counts >= 1, got 2"),
    ("calibrate --steps 1,2.5,4 --out {out}", "expected comma-separated whole step counts >= 0"),
    ("calibrate --steps 1,2,2,3 --out {out}", "--steps 1,2,2,3: 2 is listed twice"),
    ("calibrate --models brick --steps 1,2,5000 --out {out}", "at most 1000 steps on it"),
    ("calibrate --models brick --mismatch --mismatch-steps 1001 --out {out}", "at most 1000"),
    # calibrate: counts and devices
    ("calibrate --images 0 --out {out}", "--images = 0: allowed >= 1"),
    ("calibrate --batch 0 --out {out}", "--batch = 0: allowed >= 1"),
    ("calibrate --threads 0 --out {out}", "--threads = 0: allowed >= 1"),
    ("calibrate --jump-length 0 --out {out}", "--jump-length = 0: allowed >= 1"),
    ("calibrate --jump-n-sample 0 --out {out}", "--jump-n-sample = 0: allowed >= 1"),
    ("calibrate --mismatch --mismatch-steps 0 --out {out}", "--mismatch-steps = 0: allowed >= 1"),
    ("calibrate --seed -1 --out {out}", "--seed = -1: allowed >= 0"),
    ("calibrate --device gpu --out {out}", "--device gpu: not a torch device; allowed: cpu"),
    ("calibrate --device meta --out {out}", "--device meta: not a device this executor runs on"),
    # calibrate: the measurements to refit
    ("calibrate --measurements {missing} --out {out}", "missing.csv does not exist"),
    ("calibrate --measurements {binary} --out {out}", "binary.csv is not a CSV table"),
    ("calibrate --measurements {no_columns} --out {out}", "lacks column(s) tv, latency_s"),
    ("calibrate --measurements {nan_tv} --out {out}", "nan_tv.csv: tv is 'nan' on line 2"),
    ("calibrate --measurements {two_steps} --out {out}", "has 2 distinct step count(s) >= 1"),
    ("calibrate --measurements {flat_latency} --out {out}", "latency does not grow with steps"),
    ("calibrate --measurements {measurements} --models nope --out {out}", "--models nope: not in"),
    # calibrate: the output folder
    ("calibrate --measurements {measurements} --out {file}", "plain.txt is a file, not a folder"),
    # zoo
    ("zoo --zoo-dir {file} list", "--zoo-dir {file} is a file, not a folder"),
    ("zoo --zoo-dir {corrupt_zoo} list", "manifest.json is unreadable"),
    ("zoo --zoo-dir {nan_zoo} list", "NaN is not a number JSON allows"),
    ("zoo --zoo-dir {zoo} evaluate --images 0", "--images = 0: allowed >= 1"),
    ("zoo --zoo-dir {zoo} evaluate --source nope", "--source nope: unknown; allowed: brick,"),
    ("zoo --zoo-dir {zoo} evaluate --source brick", "model brick has no folder"),
    ("zoo --zoo-dir {zoo} evaluate --device gpu", "--device gpu: not a torch device"),
    ("zoo --zoo-dir {empty_zoo} evaluate", "has no trained model"),
    ("zoo --zoo-dir {zoo} train --source text --minutes 0", "--minutes = 0: allowed a finite"),
    ("zoo --zoo-dir {zoo} train --source text --minutes nan", "--minutes = nan: allowed a fin"),
    ("zoo --zoo-dir {zoo} train --source text --steps 0", "--steps = 0: allowed >= 1"),
    ("zoo --zoo-dir {zoo} train --source text --eval-images 0", "--eval-images = 0: allowed >="),
    ("zoo --zoo-dir {zoo} train --source text --threads 0", "--threads = 0: allowed >= 1"),
    ("zoo --zoo-dir {zoo} train --source text --seed -1", "--seed = -1: allowed >= 0"),
    ("zoo --zoo-dir {zoo} train --source nope", "--source nope: unknown; allowed: brick,"),
    ("zoo --zoo-dir {file} train --source text", "--zoo-dir {file} is a file, not a folder"),
    ("zoo --zoo-dir {zoo} train --source text --steps 1", "already holds trained model(s) text"),
    ("zoo --zoo-dir {zoo} train --steps 1", "holds trained model(s) brick, grass, gravel, text"),
]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def write_measurements(path: Path, rows: pd.DataFrame) -> str:
    rows.to_csv(path, index=False)
    return str(path)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """The placeholders of `CASES`: bad files and folders, and a scratch zoo (manifest only)."""
    tmp = tmp_path_factory.mktemp("inputs")
    zoo = tmp / "zoo"
    zoo.mkdir()
    shutil.copy(MANIFEST_PATH, zoo / "manifest.json")
    (tmp / "empty_zoo").mkdir()
    (tmp / "corrupt_zoo").mkdir()
    (tmp / "corrupt_zoo" / "manifest.json").write_bytes(SHIPPED_MANIFEST_BYTES[:500])
    (tmp / "nan_zoo").mkdir()
    nan_manifest = SHIPPED_MANIFEST_BYTES.replace(
        b'"heldout_psnr_db": 33.48', b'"heldout_psnr_db": NaN'
    )
    (tmp / "nan_zoo" / "manifest.json").write_bytes(nan_manifest)
    (tmp / "plain.txt").write_text("not a folder\n")
    (tmp / "not_ddpm").mkdir()
    (tmp / "not_ddpm" / "README").write_text("no model here\n")
    truncated = tmp / "truncated"
    shutil.copytree(MODELS_DIR / "brick", truncated)
    weights = truncated / "unet" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1_000_000])
    (tmp / "binary.csv").write_bytes(b"\x00\xff\xfe\x80")
    shipped = pd.read_csv(MEASUREMENTS)
    brick = shipped[shipped["model"] == "brick"]
    nan_tv = shipped.copy()
    nan_tv.loc[0, "tv"] = float("nan")
    flat = pd.DataFrame(
        {"model": "m", "steps": [1, 2, 3], "tv": [9.0, 5.0, 4.0], "latency_s": [0.3, 0.2, 0.1]}
    ).assign(device="cpu")
    return {
        "zoo": str(zoo),
        "empty_zoo": str(tmp / "empty_zoo"),
        "corrupt_zoo": str(tmp / "corrupt_zoo"),
        "nan_zoo": str(tmp / "nan_zoo"),
        "file": str(tmp / "plain.txt"),
        "not_ddpm": str(tmp / "not_ddpm"),
        "truncated": str(truncated),
        "brick": str(MODELS_DIR / "brick"),
        "measurements": str(MEASUREMENTS),
        "missing": str(tmp / "missing.csv"),
        "binary": str(tmp / "binary.csv"),
        "no_columns": write_measurements(tmp / "no_columns.csv", brick[["model", "steps"]]),
        "nan_tv": write_measurements(tmp / "nan_tv.csv", nan_tv),
        "two_steps": write_measurements(tmp / "two_steps.csv", brick[brick["steps"] <= 2]),
        "flat_latency": write_measurements(tmp / "flat_latency.csv", flat),
    }


def fill(template: str, inputs: dict[str, str], out: Path) -> str:
    return template.format(out=out, **inputs)


@pytest.mark.parametrize(("command", "fragment"), CASES, ids=[c for c, _ in CASES])
def test_bad_input_is_one_line_and_writes_nothing(
    command: str, fragment: str, inputs: dict[str, str], tmp_path: Path
):
    out = tmp_path / "out"
    args = parse([fill(token, inputs, out) for token in command.split()])
    with pytest.raises(TestbedError) as error:
        args.handler(args)
    message = str(error.value)
    assert fill(fragment, inputs, out) in message
    assert "\n" not in message
    assert not out.exists()
    assert sorted(p.name for p in Path(inputs["zoo"]).iterdir()) == ["manifest.json"]
    assert (Path(inputs["zoo"]) / "manifest.json").read_bytes() == SHIPPED_MANIFEST_BYTES
    assert MANIFEST_PATH.read_bytes() == SHIPPED_MANIFEST_BYTES


@pytest.mark.parametrize(("command", "fragment"), CASES, ids=[c for c, _ in CASES])
def test_testbed_answers_bad_input_in_one_line_with_exit_2(
    command: str, fragment: str, inputs: dict[str, str], tmp_path: Path, capsys
):
    from testbed.cli import main

    out = tmp_path / "out"
    assert main([fill(token, inputs, out) for token in command.split()]) == 2
    captured = capsys.readouterr()
    (line,) = captured.err.splitlines()
    assert line.startswith("testbed: error: ")
    assert fill(fragment, inputs, out) in line
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
@pytest.mark.parametrize("command", ["calibrate --out {out}", "zoo --zoo-dir {zoo} evaluate"])
def test_cuda_without_a_cuda_device_is_refused(
    command: str, inputs: dict[str, str], tmp_path: Path
):
    out = tmp_path / "out"
    args = parse([fill(token, inputs, out) for token in command.split()] + ["--device", "cuda"])
    with pytest.raises(TestbedError, match="--device cuda: torch sees no CUDA device"):
        args.handler(args)
    assert not out.exists()


def refit_brick(out: Path, *flags: str) -> argparse.Namespace:
    refit = ["calibrate", "--measurements", str(MEASUREMENTS), "--models", "brick"]
    return parse([*refit, "--out", str(out), *flags])


def test_existing_out_is_refused_and_overwrite_replaces_it_whole(tmp_path: Path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier run\n")
    args = refit_brick(out)
    with pytest.raises(TestbedError, match="exists and is not empty: pass --overwrite"):
        args.handler(args)
    assert sorted(p.name for p in out.iterdir()) == ["stale.txt"]
    args = refit_brick(out, "--overwrite")
    assert args.handler(args) == 0
    assert sorted(p.name for p in out.iterdir()) == ["fig3_brick.png", "profile.toml"]
    from testbed.core.config import load_profile

    refitted = load_profile(out / "profile.toml")
    committed = load_profile(COMMITTED_PROFILE)
    index = next(i for i, m in enumerate(committed.models) if m["name"] == "brick")
    for metric, curves in refitted.curves.items():
        assert curves[0] == committed.curves[metric][index]
    assert refitted.models[0]["B1"] == committed.models[index]["B1"]
    assert refitted.repaint == committed.repaint


def test_overwrite_never_deletes_its_own_input(tmp_path: Path):
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(MEASUREMENTS, out / "measurements.csv")
    refit = ["calibrate", "--measurements", str(out / "measurements.csv")]
    args = parse([*refit, "--out", str(out), "--overwrite"])
    with pytest.raises(TestbedError, match="--overwrite would delete it"):
        args.handler(args)
    assert (out / "measurements.csv").read_bytes() == MEASUREMENTS.read_bytes()


def test_an_interrupted_sweep_keeps_the_models_it_finished(tmp_path: Path, monkeypatch):
    import calibration.cli

    shipped = pd.read_csv(MEASUREMENTS)
    finished = shipped[shipped["model"] == "brick"].reset_index(drop=True)

    def sweep_model(executor, model: str, *args, **kwargs) -> pd.DataFrame:
        if model == "text":
            raise KeyboardInterrupt
        return finished

    monkeypatch.setattr(calibration.cli, "sweep_model", sweep_model)
    out = tmp_path / "run"
    args = parse(["calibrate", "--models", "brick,text", "--device", "cpu", "--out", str(out)])
    with pytest.raises(KeyboardInterrupt):
        args.handler(args)
    kept = pd.read_csv(out / "measurements.csv")
    assert len(kept) == 160 and set(kept["model"]) == {"brick"}


def entry(name: str, **changes: float) -> ZooEntry:
    values = dict(
        name=name,
        source="s",
        resolution_px=32,
        parameters=10,
        training_steps=5,
        training_time_s=1.0,
        final_loss=0.1,
        size_on_disk_bytes=123,
        seed=0,
        heldout_psnr_db=30.0,
    )
    return ZooEntry(**(values | changes))


def test_manifest_write_refuses_nan_and_is_atomic(tmp_path: Path, monkeypatch):
    from calibration.zoo_training import upsert_zoo_manifest, write_zoo_manifest

    path = tmp_path / "manifest.json"
    write_zoo_manifest([entry("brick"), entry("text")], path)
    before = path.read_bytes()
    for bad in (float("nan"), float("inf")):
        with pytest.raises(
            CheckpointError,
            match=r"heldout_psnr_db is (nan|inf); a manifest holds finite numbers only",
        ):
            upsert_zoo_manifest(entry("brick", heldout_psnr_db=bad), path)
        assert path.read_bytes() == before
    # a crash between writing and renaming leaves the old manifest whole
    import testbed.core.outputs

    def crash(src: object, dst: object) -> None:
        raise OSError("disk gone")

    monkeypatch.setattr(testbed.core.outputs.os, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        upsert_zoo_manifest(entry("brick", heldout_psnr_db=31.5), path)
    assert path.read_bytes() == before
    monkeypatch.undo()
    upsert_zoo_manifest(entry("brick", heldout_psnr_db=31.5), path)
    assert [e.heldout_psnr_db for e in read_manifest(path)] == [31.5, 30.0]
    assert json.loads(path.read_text())["models"][0]["heldout_psnr_db"] == 31.5


def test_zoo_train_refuses_a_trained_model_and_overwrite_replaces_it_whole(tmp_path: Path):
    pytest.importorskip("diffusers")
    zoo = ["zoo", "--zoo-dir", str(tmp_path)]
    train = [*zoo, "train", "--source", "text", "--steps", "2", "--eval-images", "1"]
    args = parse(train)
    assert args.handler(args) == 0
    first = read_manifest(tmp_path / "manifest.json")
    (tmp_path / "models" / "text" / "stale.txt").write_text("left by hand\n")
    with pytest.raises(
        TestbedError, match=r"already holds trained model\(s\) text: pass --overwrite"
    ):
        args.handler(args)
    assert read_manifest(tmp_path / "manifest.json") == first
    args = parse([*train[:-4], "--steps", "3", "--eval-images", "1", "--overwrite"])
    assert args.handler(args) == 0
    (retrained,) = read_manifest(tmp_path / "manifest.json")
    assert first[0].training_steps == 2 and retrained.training_steps == 3
    assert retrained.heldout_psnr_db is not None and 5.0 < retrained.heldout_psnr_db < 60.0
    assert not (tmp_path / "models" / "text" / "stale.txt").exists()
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == ["text"]
