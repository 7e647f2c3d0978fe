"""Simulated against measured: the summary and the report of a live run.

Every user-slot of a live trace carries the system model's prediction (the simulator's
columns: same world, same actions, the scenario's calibration profile) beside what the
nodes measured (``measured_*``). :func:`summarise_live` gives both utilities, hit ratios and
violation rates, and the mean absolute percentage error (MAPE) of G and of each of its
parts. :func:`gap_breakdown` splits the mean gap of G, measured minus simulated, into the
parts of eqs. (4)-(10) so that they add up to it exactly:

=================  ============================================================
part               alpha x (measured - simulated) of ...
=================  ============================================================
uplink             the radio upload, d_in / R_up of eq. (4)
backhaul           d_in / R_bc + d_op / R_cb of a request served by the cloud
generation fit     the generation time without the wait, against eq. (8)
waiting at edge    the wait behind other users (eq. (8) has no queue)
downlink           the radio download, d_op / R_dw of eq. (6)
quality fit        (1 - alpha) x (measured quality - eq. (7)), in the catalogue's quality_metric
=================  ============================================================
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

BREAKDOWN = ("uplink", "backhaul", "generation fit", "waiting at edge", "downlink", "quality fit")
NO_SERVED = "no served user-slots"
"""What a summary says in place of a number of the served user-slots when there are none."""
SERVED_ONLY = ("mean_tv", "mean_hole_mae", "mean_psnr_db", "mean_ssim", "mean_wait_s")
"""The measured metrics of the served user-slots only."""


def _mape(simulated: pd.Series, measured: pd.Series) -> float:
    """Mean of |simulated - measured| / |measured| in %, over entries with measured != 0."""
    keep = measured.abs() > 1e-12
    if not keep.any():
        return float("nan")
    return float(100.0 * ((simulated[keep] - measured[keep]).abs() / measured[keep].abs()).mean())


def simulated_backhaul_s(trace: pd.DataFrame, up_bps: float, down_bps: float) -> pd.Series:
    """The backhaul part of eqs. (4) and (6): d_in / R_bc + d_op / R_cb on a miss."""
    backhaul = trace["d_in_bits"] / up_bps + trace["d_op_bits"] / down_bps
    return backhaul.where(~trace["cached"], 0.0)


def gap_breakdown(trace: pd.DataFrame, alpha: float, up_bps: float, down_bps: float) -> dict:
    """Mean measured-minus-simulated G of the served user-slots, split into the parts of
    the module's table (they sum to the total)."""
    served = trace[trace["failure"] == ""]
    sim_bh = simulated_backhaul_s(served, up_bps, down_bps)
    sim_bh_up = (served["d_in_bits"] / up_bps).where(~served["cached"], 0.0)
    sim_bh_down = sim_bh - sim_bh_up
    meas_bh_up = served["measured_D_bh_up_s"]
    meas_bh_down = served["measured_D_bh_s"] - meas_bh_up
    parts = {
        "uplink": alpha
        * ((served["measured_D_up_s"] - meas_bh_up) - (served["D_up_s"] - sim_bh_up)),
        "backhaul": alpha * (served["measured_D_bh_s"] - sim_bh),
        "generation fit": alpha
        * ((served["measured_D_gt_s"] - served["measured_wait_s"]) - served["D_gt_s"]),
        "waiting at edge": alpha * served["measured_wait_s"],
        "downlink": alpha
        * ((served["measured_D_dw_s"] - meas_bh_down) - (served["D_dw_s"] - sim_bh_down)),
        "quality fit": (1.0 - alpha) * (served["measured_quality"] - served["quality"]),
    }
    out = {name: float(part.mean()) if len(part) else float("nan") for name, part in parts.items()}
    out["total"] = float((served["measured_G"] - served["G"]).mean()) if len(served) else math.nan
    return out


def loop_overhead(trace: pd.DataFrame, slots: pd.DataFrame, time_scale: float) -> dict:
    """The loop's own share of each slot's wall time: the slot's wall time (since the
    previous slot ended) minus its critical path (the slowest served user's measured delay,
    links in wall seconds), over the slot's wall time; frames' first slots (cache fills
    first) are left out."""
    served = trace[trace["failure"] == ""]
    wall_delay = (served["measured_D_up_s"] + served["measured_D_dw_s"]) / time_scale + served[
        "measured_D_gt_s"
    ]
    critical = wall_delay.groupby([served["episode"], served["frame"], served["slot"]]).max()
    shares = []
    for (episode, frame, slot), path in critical.items():
        row = slots[(slots["episode"] == episode) & (slots["frame"] == frame)]
        if slot < len(row) and pd.notna(row["loop_wall_s"].iloc[slot]):
            wall = float(row["loop_wall_s"].iloc[slot])
            shares.append((wall - path) / wall)
    if not shares:
        return {"median_share": NO_SERVED, "max_share": NO_SERVED, "slots": 0}
    return {
        "median_share": float(pd.Series(shares).median()),
        "max_share": float(max(shares)),
        "slots": len(shares),
    }


def summarise_live(
    trace: pd.DataFrame, alpha: float, up_bps: float, down_bps: float, metric: str = "tv"
) -> dict:
    """Simulated and measured metrics of a live trace, the MAPEs and the gap breakdown;
    ``metric`` is the quality measure of eq. (7) the run was scored with."""
    served = trace[trace["failure"] == ""]
    summary = _summary(trace, served, alpha, up_bps, down_bps, metric)
    if served.empty:  # no number of the served user-slots: say so, never NaN
        summary["measured"].update(dict.fromkeys(SERVED_ONLY, NO_SERVED))
        summary["mape_percent"] = summary["gap_breakdown"] = NO_SERVED
    return summary


def _summary(
    trace: pd.DataFrame,
    served: pd.DataFrame,
    alpha: float,
    up_bps: float,
    down_bps: float,
    metric: str,
) -> dict:
    measured_gen = served["measured_D_gt_s"]
    failures = trace.loc[trace["failure"] != "", "failure"]
    return {
        "quality_metric": metric,
        "user_slots": len(trace),
        "failed_user_slots": len(failures),
        "most_frequent_failure": str(failures.mode().iloc[0]) if len(failures) else "",
        "simulated": {
            "utility": float(trace["G"].mean()),
            "hit_ratio": float(trace["cached"].mean()),
            "violation_rate": float(trace["violation"].mean()),
            "mean_delay_s": float(trace["D_tl_s"].mean()),
            "mean_quality": float(trace["quality"].mean()),
        },
        "measured": {
            "utility": float(trace["measured_G"].mean()),
            "hit_ratio": float((trace["served_by"] == "edge").mean()),
            "violation_rate": float(trace["measured_violation"].mean()),
            "mean_delay_s": float(trace["measured_D_tl_s"].mean()),
            "mean_quality": float(trace["measured_quality"].mean()),
            "mean_tv": float(served["measured_tv"].mean()),
            "mean_hole_mae": float(served["measured_hole_mae"].mean()),
            "mean_psnr_db": float(served["measured_psnr"].mean()),
            "mean_ssim": float(served["measured_ssim"].mean()),
            "mean_wait_s": float(served["measured_wait_s"].mean()),
        },
        "mape_percent": {
            "G": _mape(served["G"], served["measured_G"]),
            "D_up": _mape(served["D_up_s"], served["measured_D_up_s"]),
            "D_dw": _mape(served["D_dw_s"], served["measured_D_dw_s"]),
            "D_gt": _mape(served["D_gt_s"], measured_gen),
            "D_tl": _mape(served["D_tl_s"], served["measured_D_tl_s"]),
            "quality": _mape(served["quality"], served["measured_quality"]),
        },
        "gap_breakdown": gap_breakdown(trace, alpha, up_bps, down_bps),
    }


def _plot_scatter(trace: pd.DataFrame, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    for served_by, part in trace.groupby("served_by"):
        ax.scatter(part["G"], part["measured_G"], s=14, alpha=0.7, label=served_by or "failed")
    lo = float(min(trace["G"].min(), trace["measured_G"].min()))
    hi = float(max(trace["G"].max(), trace["measured_G"].max()))
    ax.plot([lo, hi], [lo, hi], color="grey", lw=1, label="y = x")
    ax.set_xlabel("simulated G (eq. (10), calibration profile)")
    ax.set_ylabel("measured G")
    ax.set_title("G per user-slot", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_series(slots: pd.DataFrame, path: Path) -> None:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.2, 3.4))
    ax.plot(slots["slot"], slots["simulated_utility"], marker="o", label="simulated")
    ax.plot(slots["slot"], slots["measured_utility"], marker="s", label="measured")
    ax.set_xlabel("slot")
    ax.set_ylabel("mean G over the users")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_breakdown(breakdown: dict, path: Path) -> None:
    import matplotlib.pyplot as plt

    values = [breakdown[name] for name in BREAKDOWN]
    fig, ax = plt.subplots(figsize=(6.2, 3.4))
    colors = ["#c44e52" if v > 0 else "#4c72b0" for v in values]
    ax.barh(list(BREAKDOWN), values, color=colors)
    ax.axvline(0, color="grey", lw=1)
    ax.set_xlabel("mean measured - simulated G (its parts)")
    ax.set_title(f"gap {breakdown['total']:+.3f} per user-slot", fontsize=10)
    ax.invert_yaxis()
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _plot_gallery(gallery: list[dict], gallery_dir: Path, path: Path, count: int = 4) -> None:
    import matplotlib.pyplot as plt

    entries = gallery[:count]
    if not entries:
        return
    fig, axes = plt.subplots(len(entries), 3, figsize=(6.0, 2.1 * len(entries)), squeeze=False)
    for row, entry in zip(axes, entries, strict=True):
        for ax, kind in zip(row, ("upload", "output", "truth"), strict=True):
            ax.imshow(plt.imread(gallery_dir / f"{entry['stem']}_{kind}.png"))
            ax.set_xticks([])
            ax.set_yticks([])
        row[0].set_ylabel(entry["model"], fontsize=8)
        row[1].set_title(
            f"{entry['served_by']}, {entry['steps_run']} steps: TV {entry['tv']:.2f}, "
            f"hole MAE {entry['hole_mae']:.1f}%, PSNR {entry['psnr_db']:.1f} dB",
            fontsize=7,
        )
    axes[0][0].set_title("upload (corrupted)", fontsize=8)
    axes[0][2].set_title("ground truth", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


MAPE_KEYS = ("G", "D_up", "D_dw", "D_gt", "D_tl", "quality")
"""The parts of a live run's MAPE, in the report's order."""


def write_report(out: Path, summary: dict, trace: pd.DataFrame, slots: pd.DataFrame) -> Path:
    """``report.md`` with its PNGs: the scatter, the per-slot series, the breakdown and the
    gallery of the run folder ``out``."""
    import matplotlib

    matplotlib.use("Agg")
    _plot_scatter(trace, out / "measured_vs_simulated.png")
    _plot_series(slots, out / "slots.png")
    if summary["gap_breakdown"] != NO_SERVED:
        _plot_breakdown(summary["gap_breakdown"], out / "gap_breakdown.png")
    _plot_gallery(summary.get("gallery", []), out / "gallery", out / "gallery.png")
    lines = [*_metrics_lines(summary), *_breakdown_lines(summary)]
    if summary.get("events") or any(summary.get("faults", {}).values()):
        lines += _fault_lines(summary, trace)
    if summary.get("refit"):
        lines += _refit_lines(summary["refit"])
    if summary.get("gallery"):
        lines += [
            "A few user-slots: the corrupted upload, what came back, the ground truth.",
            "",
            "![gallery](gallery.png)",
            "",
        ]
    if summary.get("frames"):
        lines += _fill_lines(summary["frames"])
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def _metrics_lines(summary: dict) -> list[str]:
    """The report's head: the run, simulated beside measured, the MAPEs."""
    sim, meas = summary["simulated"], summary["measured"]
    metric = summary.get("quality_metric", "tv")
    head = [
        f"# Live run: {summary['policy']} ({summary['slots']} slots, "
        f"{summary['user_slots']} user-slots)",
        "",
        f"Links paced at time scale {summary['time_scale']:g} (emulated seconds per wall "
        "second on the links only; generation is always real, so measured generation and "
        f"waiting are wall seconds). Wall time {summary['wall_s']:.1f} s.",
        "",
        "| | simulated | measured |",
        "|---|---|---|",
        f"| utility (mean G) | {sim['utility']:.3f} | {meas['utility']:.3f} |",
        f"| hit ratio | {sim['hit_ratio']:.3f} | {meas['hit_ratio']:.3f} |",
        f"| violation rate (11h) | {sim['violation_rate']:.3f} | {meas['violation_rate']:.3f} |",
        f"| mean delay D_tl (s) | {sim['mean_delay_s']:.3f} | {meas['mean_delay_s']:.3f} |",
        f"| mean quality ({metric}, eq. (7)) | {sim['mean_quality']:.3f} | "
        f"{meas['mean_quality']:.3f} |",
        "",
    ]
    if summary["mape_percent"] == NO_SERVED:
        return [
            *head,
            f"Every one of the {summary['user_slots']} user-slots failed (most often: "
            f"`{summary.get('most_frequent_failure', '')}`): {NO_SERVED}, so no measured "
            "image quality, no MAPE and no gap breakdown.",
            "",
            "![measured against simulated G](measured_vs_simulated.png)",
            "",
        ]
    mape = summary["mape_percent"]
    return [
        *head,
        f"Quality measure of eq. (7): `{metric}`, lower is better. Measured beside: TV "
        f"{meas['mean_tv']:.3f}, hole MAE {meas['mean_hole_mae']:.2f}% of range, "
        f"PSNR {meas['mean_psnr_db']:.2f} dB, SSIM {meas['mean_ssim']:.3f}, "
        f"waiting at the edge {meas['mean_wait_s'] * 1e3:.1f} ms on average; "
        f"{summary['failed_user_slots']} failed user-slots.",
        "",
        "MAPE of the simulation against the measurement (served user-slots):",
        "",
        "| G | D_up | D_dw | D_gt | D_tl | quality |",
        "|---|---|---|---|---|---|",
        "| " + " | ".join(f"{mape[k]:.1f}%" for k in MAPE_KEYS) + " |",
        "",
        "![measured against simulated G](measured_vs_simulated.png)",
        "",
        "![per-slot mean G](slots.png)",
        "",
    ]


def _breakdown_lines(summary: dict) -> list[str]:
    breakdown = summary["gap_breakdown"]
    if breakdown == NO_SERVED:
        return []
    return [
        "Where the gap comes from (mean measured - simulated G per user-slot, by part):",
        "",
        "| part | gap |",
        "|---|---|",
        *(f"| {name} | {breakdown[name]:+.4f} |" for name in BREAKDOWN),
        f"| **total** | **{breakdown['total']:+.4f}** |",
        "",
        "![gap breakdown](gap_breakdown.png)",
        "",
    ]


def _fault_lines(summary: dict, trace: pd.DataFrame) -> list[str]:
    """The faults injected, what happened to the nodes, and who served the user-slots."""
    faults = summary.get("faults", {})
    injected = ", ".join(f"{k} = {v}" for k, v in faults.items() if v) or "none"
    lines = [f"Faults injected: {injected}. What happened to the nodes:", ""]
    lines += ["| slot | event |", "|---|---|"]
    lines += [f"| {e['slot']} | {e['event']} |" for e in summary.get("events", [])]
    served = {kind: int((trace["served_by"] == kind).sum()) for kind in ("edge", "cloud")}
    return [
        *lines,
        "",
        f"User-slots served at the edge {served['edge']}, at the cloud {served['cloud']}, "
        f"failed {summary['failed_user_slots']} (their status is in the trace's "
        "`failure` column).",
        "",
    ]


def _refit_lines(refit: dict) -> list[str]:
    """The MAPEs before and after a refit of the profile from a live run."""

    def row(name: str, mape: dict | str) -> str:
        if mape == NO_SERVED:
            return f"| {name} | " + " | ".join(NO_SERVED for _ in MAPE_KEYS) + " |"
        assert isinstance(mape, dict)
        return (
            f"| {name} | " + " | ".join(f"{mape.get(k, math.nan):.1f}%" for k in MAPE_KEYS) + " |"
        )

    return [
        f"The profile was refitted from the live run `{refit['from_run']}` "
        "(`testbed calibrate --from-run`). MAPE before (that run, with the offline "
        "profile) and after (this run, with the refitted one):",
        "",
        "| | " + " | ".join(MAPE_KEYS) + " |",
        "|---" * (len(MAPE_KEYS) + 1) + "|",
        row("before", refit["mape_before_percent"]),
        row("after", refit["mape_after_percent"]),
        "",
    ]


def _fill_lines(frames: list[dict]) -> list[str]:
    """The frames' caches and the seconds each fill took."""
    lines = ["Cache fills (the paper assumes them away):", "", "| frame | cached | fills |"]
    lines += ["|---|---|---|"]
    for frame in frames:
        fills = ", ".join(f"{m} {s:.2f} s" for m, s in frame["fills"].items()) or "none"
        lines.append(f"| {frame['frame']} | {', '.join(frame['applied'])} | {fills} |")
    lines.append("")
    return lines
