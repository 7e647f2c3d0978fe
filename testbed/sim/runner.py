"""The runner: H episodes x T frames x K slots of a pair of policies, written as a trace.

Episode ``e`` of run seed ``s`` always plays the same world (``episode_seed(s, e)``), and the
policies are reseeded from the same pair (``testbed.core.seeding``), so two policies meet
identical users, channels and requests, and one seed reproduces a run exactly. The loop is
the one frame/slot driver (``testbed.sim.driver``); the runner adds the trace, the metrics and
the progress bar as hooks.
"""

from __future__ import annotations

from pathlib import Path

from testbed.core.config import ModelCatalogue, ScenarioConfig, build_catalogue
from testbed.core.metrics import RunSummary, SlotMetrics
from testbed.core.protocols import AllocationPolicy, CachingPolicy, Hooks
from testbed.core.records import FrameStep, SlotStep
from testbed.runs.recorder import ProgressSpec, Recorder
from testbed.runs.traces import TraceWriter, slot_rows
from testbed.sim.executor import simulated_driver


class MetricsHook(Hooks):
    """Sums every slot and frame into a :class:`SlotMetrics`."""

    def __init__(self, metrics: SlotMetrics | None = None) -> None:
        self.metrics = metrics if metrics is not None else SlotMetrics()

    def on_slot(self, step: SlotStep) -> None:
        self.metrics.add_slot(step.outcome, step.decision_s)

    def on_frame_end(self, step: FrameStep) -> None:
        self.metrics.add_frame(step.reward, step.cache_fits, step.caching_s)


class TraceHook(Hooks):
    """Adds every slot's rows to a trace; flushes a row group after each episode."""

    def __init__(self, writer: TraceWriter, catalogue: ModelCatalogue) -> None:
        self.writer, self.catalogue = writer, catalogue

    def on_slot(self, step: SlotStep) -> None:
        self.writer.add(
            slot_rows(
                step.episode,
                step.slot,
                self.catalogue,
                step.bandwidth_share,
                step.step_share,
                step.outcome,
            )
        )

    def on_episode_end(self, episode: int) -> None:
        self.writer.flush()


EPISODE_COLUMNS = (
    "episode",
    "utility",
    "hit_ratio",
    "violation_rate",
    "mean_slot_reward",
    "mean_frame_reward",
    "mean_delay_s",
    "mean_quality",
    "decision_ms_per_slot",
)


class RecorderHook(Hooks):
    """One row of :data:`EPISODE_COLUMNS` per finished episode, through the recorder."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.episode = MetricsHook()

    def on_episode_start(self, episode: int) -> None:
        self.episode = MetricsHook()

    def on_slot(self, step: SlotStep) -> None:
        self.episode.on_slot(step)

    def on_frame_end(self, step: FrameStep) -> None:
        self.episode.on_frame_end(step)

    def on_episode_end(self, episode: int) -> None:
        means = self.episode.metrics.means()
        self.recorder.record("episode", episode)
        self.recorder.record_many({k: means[k] for k in EPISODE_COLUMNS if k != "episode"})
        self.recorder.dump(step=episode)


def run(
    config: ScenarioConfig,
    caching: CachingPolicy,
    allocation: AllocationPolicy,
    episodes: int,
    trace_path: str | Path | None = None,
    catalogue: ModelCatalogue | None = None,
    progress: bool = False,
    metrics_dir: str | Path | None = None,
) -> tuple[RunSummary, TraceWriter]:
    """Play ``episodes`` episodes; write the trace (if a path is given) as it goes.

    With ``metrics_dir``, each finished episode's averages are a row of
    ``metrics_dir/metrics.csv`` (the recorder also drives the progress line).

    Allocations are checked against (11b)-(11g) every slot; a cache that breaks (11d) is
    played as decided and counted in ``overfull_frames`` (the frame reward carries Xi).
    The writer is closed on return and also when the run is interrupted, so every row of
    every finished slot is kept.
    """
    if episodes < 1:
        raise ValueError(f"episodes = {episodes} is out of range: allowed [1, inf)")
    catalogue = catalogue if catalogue is not None else build_catalogue(config.catalogue)
    driver = simulated_driver(config, catalogue)
    writer = TraceWriter(trace_path)
    metrics = MetricsHook()
    recorder = Recorder(
        Path(metrics_dir) if metrics_dir is not None else None,
        EPISODE_COLUMNS,
        tensorboard=False,
        progress=ProgressSpec(
            total=episodes,
            unit="episode",
            postfix={"utility": "{utility:.3f}", "hit": "{hit_ratio:.3f}"},
            enabled=progress,
        ),
    )
    try:
        driver.play_evaluation(
            episodes,
            caching,
            allocation,
            config.seed,
            hooks=(metrics, TraceHook(writer, catalogue), RecorderHook(recorder)),
        )
    finally:
        recorder.close()
        writer.close()
    summary = metrics.metrics.summary(caching.name, allocation.name, episodes, config.seed)
    return summary, writer
