"""RePaint executor on a tiny random UNet: step count, mask, seed, batching, metrics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from edge_node.executor import RePaintExecutor, ServeJob  # noqa: E402
from edge_node.requests import InpaintRequest, make_requests  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=32,
        in_channels=3,
        out_channels=3,
        block_out_channels=(16, 16),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    )
    path = tmp_path_factory.mktemp("tiny") / "tiny_ddpm"
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler()).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def requests() -> list[InpaintRequest]:
    return make_requests("brick", 3, seed=7)


@pytest.fixture(scope="module")
def executor() -> RePaintExecutor:
    return RePaintExecutor(device="cpu")


@pytest.mark.parametrize("steps", [1, 4, 13])
def test_unet_calls_equal_steps_without_jumps(executor, tiny_model_dir, requests, steps):
    results = executor.inpaint(tiny_model_dir, requests[:2], steps)
    assert [r.unet_calls for r in results] == [steps, steps]
    assert results[0].batch_size == 2
    assert results[0].latency_s > 0.0


def test_resampling_jumps_add_unet_calls(tiny_model_dir, requests):
    # 20 steps, jumps at t = 0, 5, 10, each re-running (3 - 1) x 5 steps: 20 + 3 * 10 = 50
    jumping = RePaintExecutor(device="cpu", jump_length=5, jump_n_sample=3)
    assert jumping.inpaint(tiny_model_dir, requests[:1], 20)[0].unet_calls == 50


def test_zero_steps_returns_the_masked_input(executor, tiny_model_dir, requests):
    result = executor.inpaint(tiny_model_dir, requests[:1], 0)[0]
    assert result.unet_calls == 0
    np.testing.assert_array_equal(result.image, requests[0].masked_image)


def test_kept_pixels_are_unchanged(executor, tiny_model_dir, requests):
    for request, result in zip(
        requests, executor.inpaint(tiny_model_dir, requests, 6), strict=True
    ):
        keep = request.mask.astype(bool)
        assert 0 < keep.sum() < keep.size
        np.testing.assert_allclose(result.image[keep], request.ground_truth[keep], atol=1e-5)
        # the random UNet fills the hole with something other than the ground truth
        assert np.abs(result.image[~keep] - request.ground_truth[~keep]).mean() > 0.05


def test_same_seed_same_output_other_seed_other_output(executor, tiny_model_dir, requests):
    first = executor.inpaint(tiny_model_dir, requests[:1], 5)[0].image
    again = executor.inpaint(tiny_model_dir, requests[:1], 5)[0].image
    np.testing.assert_array_equal(first, again)
    other = InpaintRequest(requests[0].ground_truth, requests[0].mask, seed=requests[0].seed + 1)
    reseeded = executor.inpaint(tiny_model_dir, [other], 5)[0].image
    assert np.abs(first - reseeded).max() > 1e-3


def test_serve_batches_by_model_and_steps_and_keeps_order(executor, tiny_model_dir, requests):
    model = str(tiny_model_dir)
    jobs = [ServeJob(model, requests[0], 3), ServeJob(model, requests[1], 2)]
    jobs += [ServeJob(model, requests[2], 3)]
    results = executor.serve(jobs, max_batch=8)
    assert [r.steps for r in results] == [3, 2, 3]
    assert [r.batch_size for r in results] == [2, 1, 2]
    assert [r.unet_calls for r in results] == [3, 2, 3]


def test_metrics_of_a_perfect_and_a_flat_output(executor):
    rng = np.random.default_rng(0)
    truth = rng.uniform(0.0, 1.0, size=(1, 32, 32, 3)).astype(np.float32)
    flat = np.full_like(truth, 0.5)
    outputs, reference = np.concatenate([truth, flat]), np.concatenate([truth, truth])
    tv, psnr_db, ssim = executor.score(outputs, reference)
    assert tv[1] == pytest.approx(0.0, abs=1e-6)
    # l2 TV of i.i.d. U(0,1) pixels: sqrt(2 * 32 * 31 * 3 * E[(a-b)^2] = 1/6) ~ 31.5
    assert tv[0] == pytest.approx(np.sqrt(2 * 32 * 31 * 3 / 6), rel=0.05)
    assert psnr_db[0] > 60.0
    assert ssim[0] == pytest.approx(1.0, abs=1e-4)
    # MSE of U(0,1) against 0.5 is 1/12: PSNR = 10 log10(12) ~ 10.8 dB
    assert psnr_db[1] == pytest.approx(10 * np.log10(12), abs=0.3)


def test_models_load_once_and_unload(tiny_model_dir, requests):
    executor = RePaintExecutor(device="cpu")
    assert executor.loaded_models() == []
    pipeline = executor.load(tiny_model_dir)
    executor.inpaint(tiny_model_dir, requests[:1], 2)
    assert executor.load(tiny_model_dir) is pipeline
    assert executor.loaded_models() == [str(tiny_model_dir)]
    executor.unload(tiny_model_dir)
    assert executor.loaded_models() == []
    assert executor.load(tiny_model_dir) is not pipeline


@pytest.mark.gpu
def test_cuda_run_counts_steps_keeps_pixels_and_matches_cpu(tiny_model_dir, requests):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    gpu = RePaintExecutor(device="cuda")
    on_gpu = gpu.inpaint(tiny_model_dir, requests[:2], 5)
    on_cpu = RePaintExecutor(device="cpu").inpaint(tiny_model_dir, requests[:2], 5)
    assert [r.unet_calls for r in on_gpu] == [5, 5] and on_gpu[0].device == "cuda"
    for request, gpu_result, cpu_result in zip(requests, on_gpu, on_cpu, strict=False):
        keep = request.mask.astype(bool)
        np.testing.assert_allclose(gpu_result.image[keep], request.ground_truth[keep], atol=1e-5)
        # CPU generators give both devices the same noise; only float rounding differs
        np.testing.assert_allclose(gpu_result.image, cpu_result.image, atol=2e-2)
