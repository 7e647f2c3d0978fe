"""RePaint's resampling schedule and the UNet's precision: `unet_calls` against diffusers'
scheduler and the executor's counted calls, bfloat16 on CPU, and the nodes' executor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from tiny_models import save_tiny_ddpm  # noqa: E402

from edge_node.executor import DTYPES, RePaintExecutor, to_device_tensor, unet_calls  # noqa: E402
from edge_node.worker import make_executor  # noqa: E402
from testbed.core.config import RepaintSettings  # noqa: E402
from testbed.core.errors import TestbedError  # noqa: E402
from ue_emulator.requests import UserRequest, make_requests  # noqa: E402

SCHEDULES = [
    # (steps, jump_length, jump_n_sample) -> UNet calls, worked out by hand from
    # RePaintScheduler.set_timesteps: jump points j = 0, L, 2L, ... < n - L, each re-run
    # (jump_n_sample - 1) x L steps
    ((1, 5, 5), 1),  # n <= L: no jump point
    ((5, 5, 5), 5),  # range(0, 0, 5) is empty
    ((10, 5, 5), 30),  # j = 0: 10 + 4 * 5
    ((12, 5, 5), 52),  # j = 0, 5: 12 + 2 * 4 * 5
    ((20, 10, 3), 40),  # j = 0: 20 + 2 * 10
    ((7, 3, 2), 13),  # j = 0, 3: 7 + 2 * 1 * 3
    ((10, 10, 1), 10),  # jump_n_sample = 1: one call per step
]


def scheduler_unet_calls(steps: int, jump_length: int, jump_n_sample: int) -> int:
    """The UNet calls of diffusers' own timestep list: the pipeline calls the UNet wherever
    t falls below the previous timestep (the first included), and undoes a step elsewhere."""
    scheduler = diffusers.RePaintScheduler.from_config(diffusers.DDPMScheduler().config)
    scheduler.set_timesteps(steps, jump_length, jump_n_sample)
    timesteps = [int(t) for t in scheduler.timesteps]
    previous = [timesteps[0] + 1, *timesteps[:-1]]
    return sum(t < last for t, last in zip(timesteps, previous, strict=True))


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 32 px DDPM checkpoint (UNet + DDPMScheduler), as save_pretrained writes it."""
    return save_tiny_ddpm(tmp_path_factory.mktemp("tiny") / "tiny_ddpm")


@pytest.fixture(scope="module")
def users() -> list[UserRequest]:
    return make_requests("brick", 2, seed=11)


@pytest.mark.parametrize(("schedule", "expected"), SCHEDULES)
def test_unet_calls_match_the_scheduler_and_the_counted_calls(
    tiny_model_dir, users, schedule, expected
):
    steps, jump_length, jump_n_sample = schedule
    assert unet_calls(steps, jump_length, jump_n_sample) == expected
    assert scheduler_unet_calls(steps, jump_length, jump_n_sample) == expected
    executor = RePaintExecutor(device="cpu", jump_length=jump_length, jump_n_sample=jump_n_sample)
    (result,) = executor.inpaint(tiny_model_dir, [users[0].request], steps)
    assert result.unet_calls == expected


def test_unet_calls_agree_with_the_scheduler_over_a_grid():
    for steps in range(1, 41):
        for jump_length in (1, 2, 3, 5, 7, 10, 40):
            for jump_n_sample in (1, 2, 5):
                assert unet_calls(steps, jump_length, jump_n_sample) == scheduler_unet_calls(
                    steps, jump_length, jump_n_sample
                ), (steps, jump_length, jump_n_sample)


def test_unet_calls_edge_cases():
    assert unet_calls(0, 5, 5) == 0
    # the scheduler runs at most num_train_timesteps steps: 1000 + 99 jumps x 9 x 10
    assert unet_calls(2000, 10, 10, num_train_timesteps=1000) == 1000 + 99 * 9 * 10
    assert unet_calls(2000, 10, 1) == 2000
    for bad in ((-1, 5, 5), (5, 0, 5), (5, 5, 0)):
        with pytest.raises(ValueError, match=">= "):
            unet_calls(*bad)


@pytest.mark.filterwarnings("ignore:The preprocess method:FutureWarning")
def test_float32_is_diffusers_pipeline_unchanged(tiny_model_dir, users):
    """The float32 executor's output is bit for bit what RePaintPipeline gives on its own."""
    from edge_node.zoo import load_unet_and_scheduler_config

    request = users[0].request
    executor = RePaintExecutor(device="cpu", jump_length=3, jump_n_sample=2, dtype="float32")
    served = executor.inpaint(tiny_model_dir, [request], 7)[0].image
    unet, scheduler_config = load_unet_and_scheduler_config(tiny_model_dir)
    pipeline = diffusers.RePaintPipeline(
        unet=unet, scheduler=diffusers.RePaintScheduler.from_config(scheduler_config)
    )
    pipeline.set_progress_bar_config(disable=True)
    direct = pipeline(
        image=to_device_tensor(request.masked_image[None], torch.device("cpu")),
        mask_image=torch.from_numpy(request.mask[None, None].astype(np.float32)),
        num_inference_steps=7,
        eta=0.0,
        jump_length=3,
        jump_n_sample=2,
        generator=[torch.Generator().manual_seed(request.seed)],
        output_type="np",
    ).images[0]
    np.testing.assert_array_equal(served, direct)


def test_bfloat16_on_cpu_runs_and_returns_float32_close_to_float32(tiny_model_dir, users):
    requests = [user.request for user in users]
    reference = RePaintExecutor(device="cpu", jump_length=5, jump_n_sample=2)
    half = RePaintExecutor(device="cpu", jump_length=5, jump_n_sample=2, dtype="bfloat16")
    expected = reference.inpaint(tiny_model_dir, requests, 12)
    results = half.inpaint(tiny_model_dir, requests, 12)
    pipeline_unet = half.load(tiny_model_dir).unet
    assert next(pipeline_unet.parameters()).dtype == torch.bfloat16
    assert [r.unet_calls for r in results] == [unet_calls(12, 5, 2)] * 2 == [22, 22]
    for user, result, full in zip(users, results, expected, strict=True):
        image = result.image
        assert image.dtype == np.float32 and image.shape == (32, 32, 3)
        assert 0.0 <= image.min() and image.max() <= 1.0
        # the loop (noise, steps, blend) stays float32: kept pixels are the upload's exactly
        keep = user.request.mask.astype(bool)
        np.testing.assert_allclose(image[keep], user.ground_truth[keep], atol=1e-5)
        # the hole differs from float32 by the UNet's rounding only (8-bit mantissa)
        difference = np.abs(image[~keep] - full.image[~keep])
        assert difference.mean() < 0.015 and difference.max() < 0.15
        assert difference.max() > 0.0  # it did run in bfloat16


@pytest.mark.parametrize("dtype", ["float64", "half", "fp16", ""])
def test_unknown_dtype_is_refused_naming_the_allowed(dtype):
    with pytest.raises(ValueError, match="allowed float32, float16, bfloat16"):
        RePaintExecutor(device="cpu", dtype=dtype)


def test_float16_is_refused_on_cpu():
    assert DTYPES == ("float32", "float16", "bfloat16")
    with pytest.raises(ValueError, match="use bfloat16 or float32"):
        RePaintExecutor(device="cpu", dtype="float16")
    with pytest.raises(TestbedError, match="use bfloat16 or float32"):
        make_executor("cpu", None, RepaintSettings(), dtype="float16")
    with pytest.raises(TestbedError, match="dtype float64: allowed float32, float16, bfloat16"):
        make_executor("cpu", None, RepaintSettings(), dtype="float64")


def test_make_executor_runs_the_repaint_settings_it_is_given(tiny_model_dir, users):
    executor = make_executor("cpu", None, RepaintSettings(jump_length=3, jump_n_sample=2))
    assert (executor.jump_length, executor.jump_n_sample, executor.dtype) == (3, 2, "float32")
    (result,) = executor.inpaint(tiny_model_dir, [users[0].request], 7)
    assert result.unet_calls == 13
    plain = make_executor("cpu", None, RepaintSettings(), dtype="bfloat16")
    assert (plain.jump_length, plain.jump_n_sample, plain.dtype) == (10, 1, "bfloat16")
