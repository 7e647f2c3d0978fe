"""RePaint executor on a tiny random UNet: step count, mask, seed, batching; it serves only."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")

from tiny_models import save_tiny_ddpm  # noqa: E402

from edge_node.executor import InpaintResult, RePaintExecutor, ServeJob  # noqa: E402
from ue_emulator.requests import InpaintRequest, UserRequest, make_requests  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_ddpm(tmp_path_factory.mktemp("tiny") / "tiny_ddpm")


@pytest.fixture(scope="module")
def users() -> list[UserRequest]:
    """Requests as the users hold them; the executor gets only `.request`, the upload."""
    return make_requests("brick", 3, seed=7)


@pytest.fixture(scope="module")
def requests(users: list[UserRequest]) -> list[InpaintRequest]:
    return [user.request for user in users]


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


def test_kept_pixels_are_unchanged(executor, tiny_model_dir, users, requests):
    for user, result in zip(users, executor.inpaint(tiny_model_dir, requests, 6), strict=True):
        keep = user.request.mask.astype(bool)
        assert 0 < keep.sum() < keep.size
        np.testing.assert_allclose(result.image[keep], user.ground_truth[keep], atol=1e-5)
        # the random UNet fills the hole with something other than the ground truth
        assert np.abs(result.image[~keep] - user.ground_truth[~keep]).mean() > 0.05


def test_the_edge_gets_no_ground_truth_and_returns_no_quality(executor, tiny_model_dir, requests):
    assert not any(hasattr(request, "ground_truth") for request in requests)
    (result,) = executor.inpaint(tiny_model_dir, requests[:1], 2)
    fields = {field.name for field in dataclasses.fields(InpaintResult)}
    assert fields == {"image", "model", "steps", "unet_calls", "latency_s", "batch_size", "device"}
    assert not {"tv", "psnr_db", "ssim"} & set(vars(result))
    assert result.image.shape == (32, 32, 3) and result.image.dtype == np.float32


def test_any_object_with_image_mask_and_seed_is_served(executor, tiny_model_dir, requests):
    @dataclasses.dataclass(frozen=True)
    class BareUpload:  # the executor's ServeRequest protocol, nothing more
        masked_image: np.ndarray
        mask: np.ndarray
        seed: int

    bare = BareUpload(requests[0].masked_image, requests[0].mask, requests[0].seed)
    from_bare = executor.inpaint(tiny_model_dir, [bare], 3)[0].image
    np.testing.assert_array_equal(
        from_bare, executor.inpaint(tiny_model_dir, requests[:1], 3)[0].image
    )


def test_same_seed_same_output_other_seed_other_output(executor, tiny_model_dir, requests):
    first = executor.inpaint(tiny_model_dir, requests[:1], 5)[0].image
    again = executor.inpaint(tiny_model_dir, requests[:1], 5)[0].image
    np.testing.assert_array_equal(first, again)
    other = dataclasses.replace(requests[0], seed=requests[0].seed + 1)
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
def test_cuda_run_counts_steps_keeps_pixels_and_matches_cpu(tiny_model_dir, users, requests):
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    gpu = RePaintExecutor(device="cuda")
    on_gpu = gpu.inpaint(tiny_model_dir, requests[:2], 5)
    on_cpu = RePaintExecutor(device="cpu").inpaint(tiny_model_dir, requests[:2], 5)
    assert [r.unet_calls for r in on_gpu] == [5, 5] and on_gpu[0].device == "cuda"
    for user, gpu_result, cpu_result in zip(users, on_gpu, on_cpu, strict=False):
        keep = user.request.mask.astype(bool)
        np.testing.assert_allclose(gpu_result.image[keep], user.ground_truth[keep], atol=1e-5)
        # CPU generators give both devices the same noise; only float rounding differs
        np.testing.assert_allclose(gpu_result.image, cpu_result.image, atol=2e-2)
