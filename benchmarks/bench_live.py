"""The live loop's own costs, measured side by side in one run on loopback.

Starts the cloud, the edge and the users' node in this process (one torch thread each, as
`testbed run` does), plays the live scenario, and prints:

* **loop overhead per slot**: the slot's wall time (from one slot's end to the next, the
  controller's own work included) minus its critical path (the slowest user's measured
  upload + backhaul + generation with its wait + download, i.e. the inference and the paced
  waits), as a share of the slot's wall time (target <= 5%);
* **pacing accuracy**: measured radio up- and downlink times against eqs. (2) and (5) for
  transfers of 50 ms and more (target: within 2%);
* **round trip**: one request of 100 KB each way through the edge with unpaced links and
  no inference (0 steps), median over repeats.

    python benchmarks/bench_live.py [--slots K] [--repeats R] [--policy P]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from testbed.core.config import load_config
from testbed.core.protocols import Hooks
from testbed.core.records import SlotStep
from testbed.live.nodes import NodeAddresses
from testbed.live.options import LIVE_SCENARIO, LiveOptions
from testbed.live.report import simulated_backhaul_s
from testbed.runs.traces import LIVE_TRACE_SCHEMA, read_trace

UNPACED_BPS = 1e12


class SlotClock(Hooks):
    """Wall time between consecutive slot ends (the first slot: from the frame's start)."""

    def __init__(self) -> None:
        self.ends: list[float] = []

    def on_slot(self, step: SlotStep) -> None:
        self.ends.append(time.perf_counter())


def loop_overhead(
    config, nodes: NodeAddresses, out: Path, policy: str
) -> tuple[dict[str, float], pd.DataFrame]:
    from testbed.live.controller import LivePlan, run_live

    plan = LivePlan.build(LiveOptions(policy=policy, gallery_users=0, progress=False), config)
    clock = SlotClock()
    run_live(plan, out, nodes, hooks=(clock,))
    trace = read_trace(out / "trace.parquet", LIVE_TRACE_SCHEMA)
    critical = trace.groupby("slot", sort=False)["measured_D_tl_s"].max().to_numpy()
    walls = np.diff(clock.ends)  # slot k's wall: from slot k-1's end (skips the cache fill)
    shares = (walls - critical[1:]) / walls
    summary = {
        "slots": float(len(walls)),
        "median_share": float(np.median(shares)),
        "max_share": float(np.max(shares)),
        "median_slot_wall_s": float(np.median(walls)),
    }
    return summary, trace


def pacing_accuracy(trace: pd.DataFrame, config) -> dict[str, float]:
    """Relative error of the measured radio transfers against eqs. (2) and (5), >= 50 ms."""
    net = config.network
    served = trace[trace["failure"] == ""]
    sim_bh_up = (served["d_in_bits"] / net.backhaul_up_rate_bps).where(~served["cached"], 0.0)
    sim_bh = simulated_backhaul_s(served, net.backhaul_up_rate_bps, net.backhaul_down_rate_bps)
    up_expected = served["D_up_s"] - sim_bh_up
    up_measured = served["measured_D_up_s"] - served["measured_D_bh_up_s"]
    down_expected = served["D_dw_s"] - (sim_bh - sim_bh_up)
    down_measured = served["measured_D_dw_s"] - (
        served["measured_D_bh_s"] - served["measured_D_bh_up_s"]
    )
    errors = {}
    for name, expected, measured in (
        ("uplink", up_expected, up_measured),
        ("downlink", down_expected, down_measured),
    ):
        long = expected >= 0.05
        rel = ((measured[long] - expected[long]) / expected[long]).abs()
        errors[f"{name}_transfers"] = float(long.sum())
        errors[f"{name}_median_error"] = float(rel.median()) if len(rel) else float("nan")
        errors[f"{name}_max_error"] = float(rel.max()) if len(rel) else float("nan")
    return errors


def _edge_requests(edge_address: str, repeats: int, downlink_bps: float, size: int):
    """``repeats`` requests through the edge with 0 steps (no inference) and ``size`` bytes
    each way, the upload unpaced; yields (round trip wall s, download wall s)."""
    from testbed.proto import common_pb2, edge_pb2_grpc
    from testbed.proto.runtime import channel
    from testbed.proto.streams import receive_reply, upload_messages
    from ue_emulator.requests import make_requests

    request = make_requests("brick", 1, seed=0)[0].request
    header = common_pb2.RequestHeader(
        request_id="bench",
        model="brick",
        steps=0,
        height_px=32,
        width_px=32,
        channels=3,
        noise_seed=1,
        input_bytes=size,
        output_bytes=size,
        downlink_rate_bps=downlink_bps,
        backhaul_up_rate_bps=UNPACED_BPS,
        backhaul_down_rate_bps=UNPACED_BPS,
        time_scale=1.0,
    )
    with channel(edge_address) as chan:
        stub = edge_pb2_grpc.EdgeStub(chan)
        for _ in range(repeats):
            start = time.perf_counter()
            messages = upload_messages(header, request.masked_image, request.mask, UNPACED_BPS)
            reply = receive_reply(stub.Generate(messages, timeout=30.0), (32, 32, 3), size)
            yield reply.completed_s - start, reply.completed_s - reply.started_s


def round_trip_s(edge_address: str, repeats: int) -> float:
    """Median round trip of 100 KB each way, unpaced, no inference."""
    return statistics.median(
        t for t, _ in _edge_requests(edge_address, repeats, UNPACED_BPS, 100_000)
    )


def download_pacing(edge_address: str, repeats: int) -> tuple[float, float]:
    """Median and max relative error of a 100 ms download (100 KB at 8 Mbit/s, eq. (5))."""
    expected = 8 * 100_000 / 8e6
    errors = [
        abs(d - expected) / expected for _, d in _edge_requests(edge_address, repeats, 8e6, 100_000)
    ]
    return statistics.median(errors), max(errors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=12, help="slots of one frame")
    parser.add_argument("--repeats", type=int, default=30, help="round trips")
    parser.add_argument("--policy", default="optimal")
    args = parser.parse_args()

    from cloud_node.server import serve as serve_cloud
    from edge_node.server import serve as serve_edge
    from ue_emulator.server import serve as serve_users

    config = load_config(LIVE_SCENARIO).replace(
        **{"timing.num_frames": 1, "timing.slots_per_frame": args.slots}
    )
    cloud = serve_cloud(config, threads=1)
    edge = serve_edge(config, cloud=cloud.address, threads=1)
    users = serve_users(config, edge=edge.address)
    nodes = NodeAddresses(users=users.address, edge=edge.address)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            overhead, trace = loop_overhead(config, nodes, Path(tmp), args.policy)
        pacing = pacing_accuracy(trace, config)
        trip = round_trip_s(edge.address, args.repeats)
        down_median, down_max = download_pacing(edge.address, 10)
    finally:
        for node in (users, edge, cloud):
            node.stop(0.5)
    print(f"live loop on loopback, U={config.network.num_users}, {args.policy}:")
    print(
        f"  loop overhead per slot: median {100 * overhead['median_share']:.2f}% of the slot's "
        f"wall time (max {100 * overhead['max_share']:.2f}%, {overhead['slots']:.0f} slots, "
        f"median slot {1e3 * overhead['median_slot_wall_s']:.0f} ms; target <= 5%)"
    )
    for name in ("uplink", "downlink"):
        if not pacing[f"{name}_transfers"]:
            print(f"  pacing, {name}: no transfer of 50 ms or more in this run")
            continue
        print(
            f"  pacing, {name} transfers >= 50 ms: median error "
            f"{100 * pacing[f'{name}_median_error']:.2f}%, max "
            f"{100 * pacing[f'{name}_max_error']:.2f}% "
            f"({pacing[f'{name}_transfers']:.0f} transfers; target within 2%)"
        )
    print(
        f"  pacing, 100 ms downloads (100 KB at 8 Mbit/s): median error "
        f"{100 * down_median:.2f}%, max {100 * down_max:.2f}% (10 transfers)"
    )
    print(f"  round trip, 100 KB each way, unpaced, 0 steps: median {1e3 * trip:.2f} ms")


if __name__ == "__main__":
    main()
