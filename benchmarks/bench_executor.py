"""RePaint executor benchmark (targets: overhead <= 5% at batch 1; batching gain at batch 8).

Two figures, each measured side by side in one run (alternating calls, alternating order):
* overhead: `RePaintExecutor.inpaint` of one request vs its bare call of diffusers'
  `RePaintPipeline` (`RePaintExecutor.run_pipeline`) on the same tensors, generator and step
  count (the executor adds the numpy/tensor boundary, the UNet-call hook and the device
  synchronisation; scoring happens on the users' side, `ue_emulator.quality`, and is not
  measured here);
* batching: 8 requests served one at a time vs as one batch of 8.

    python benchmarks/bench_executor.py [--model brick] [--steps 20] [--repeats 15] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import numpy as np
import torch

from edge_node.executor import RePaintExecutor, to_device_tensor
from ue_emulator.requests import make_requests

TARGET_OVERHEAD = 0.05
BATCH = 8


def overhead(executor: RePaintExecutor, model: str, steps: int, repeats: int) -> tuple[float, ...]:
    """Median wall time (s) of the executor and of the bare pipeline, and the median of the
    per-pair ratios executor / pipeline."""
    request = make_requests(model, 1, seed=0)[0].request
    pipeline = executor.load(model)
    image = to_device_tensor(request.masked_image[None].astype(np.float32), executor.device)
    mask = torch.from_numpy(request.mask)[None, None].to(executor.device)

    def direct() -> None:
        generators = [torch.Generator().manual_seed(request.seed)]
        executor.run_pipeline(pipeline, image, mask, steps, generators)

    def timed(call: Callable[[], object]) -> float:
        start = time.perf_counter()
        call()
        return time.perf_counter() - start

    def through_executor() -> None:
        executor.inpaint(model, [request], steps)

    executor_s, direct_s = [], []
    direct()  # warm-up
    for repeat in range(repeats):
        # alternate which goes first, so neither always pays for the pause between pairs
        if repeat % 2 == 0:
            executor_s.append(timed(through_executor))
            direct_s.append(timed(direct))
        else:
            direct_s.append(timed(direct))
            executor_s.append(timed(through_executor))
    # the ratio of each adjacent pair, then the median: robust to load drifting between pairs
    paired_ratio = statistics.median(e / d for e, d in zip(executor_s, direct_s, strict=True))
    return statistics.median(executor_s), statistics.median(direct_s), paired_ratio


def batching(executor: RePaintExecutor, model: str, steps: int, repeats: int) -> tuple[float, ...]:
    """Requests per second served one at a time and as one batch of 8, and the gain."""
    requests = [user.request for user in make_requests(model, BATCH, seed=1)]
    single_s, batched_s = [], []
    for _ in range(max(3, repeats // 3)):
        start = time.perf_counter()
        for request in requests:
            executor.inpaint(model, [request], steps)
        single_s.append(time.perf_counter() - start)
        start = time.perf_counter()
        executor.inpaint(model, requests, steps)
        batched_s.append(time.perf_counter() - start)
    single_rps = BATCH / statistics.median(single_s)
    batched_rps = BATCH / statistics.median(batched_s)
    return single_rps, batched_rps, batched_rps / single_rps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="brick", help="zoo name or DDPM checkpoint folder")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", help="cuda or cpu (default: cuda when present)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    executor = RePaintExecutor(device=args.device)
    executor_s, direct_s, ratio = overhead(executor, args.model, args.steps, args.repeats)
    verdict = "OK" if ratio - 1.0 <= TARGET_OVERHEAD else "ABOVE TARGET"
    print(f"device {executor.device.type}, threads {torch.get_num_threads()}, {args.steps} steps")
    print(
        f"batch 1: executor {executor_s * 1e3:.1f} ms, direct pipeline {direct_s * 1e3:.1f} ms "
        f"(medians of {args.repeats}), median paired ratio {ratio:.3f} "
        f"[target <= {1 + TARGET_OVERHEAD:.2f}: {verdict}]"
    )
    single_rps, batched_rps, gain = batching(executor, args.model, args.steps, args.repeats)
    print(
        f"throughput: one at a time {single_rps:.2f} req/s, batch of {BATCH} "
        f"{batched_rps:.2f} req/s, gain x{gain:.2f}"
    )


if __name__ == "__main__":
    main()
