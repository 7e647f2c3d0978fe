"""Faults a researcher injects into a live run (``testbed run --inject``), and the object
that strikes them before their slot."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from testbed.core.errors import UsageError
from testbed.proto.runtime import MAX_LINK_LOSS

if TYPE_CHECKING:
    from testbed.live.nodes import NodeSupervisor
    from testbed.live.state import LiveState

INJECT_FORMS = "edge-kill@SLOT, cloud-kill@SLOT, link-loss=P"
"""The forms of an ``--inject`` item."""


@dataclass(frozen=True)
class Faults:
    """Faults a researcher injects (``testbed run --inject``)."""

    edge_kill_slot: int | None = None
    """SIGKILL the edge before this slot (counted over the whole run from 0)."""
    cloud_kill_slot: int | None = None
    """SIGKILL the cloud before this slot."""
    link_loss: float = 0.0
    """Chunk-loss probability of every paced link (retransmitted, adding measured delay)."""

    @property
    def kills_nodes(self) -> bool:
        return self.edge_kill_slot is not None or self.cloud_kill_slot is not None

    def check_within(self, total_slots: int) -> None:
        """Refuse a kill planned at or beyond the run's last slot (``total_slots``: episodes
        x T x K), which would never strike: one line naming the flag and the allowed range."""
        for name, at in (("edge", self.edge_kill_slot), ("cloud", self.cloud_kill_slot)):
            if at is not None and at >= total_slots:
                raise UsageError(
                    f"--inject {name}-kill@{at}: SLOT must be in 0-{total_slots - 1} "
                    f"(the run has {total_slots} slots: episodes x frames x slots)"
                )

    def kills_before(self, slot: int) -> tuple[str, ...]:
        """The nodes to kill before ``slot`` of the run."""
        planned = (("edge", self.edge_kill_slot), ("cloud", self.cloud_kill_slot))
        return tuple(name for name, at in planned if at == slot)


def parse_faults(items: Iterable[str]) -> Faults:
    """``--inject`` items: ``edge-kill@SLOT``, ``cloud-kill@SLOT``, ``link-loss=P`` (a later
    item of the same kind replaces an earlier one); a bad item is a one-line `UsageError`."""
    values: dict[str, float | int] = {}
    for item in items:
        kind, at, slot = item.partition("@")
        if kind in ("edge-kill", "cloud-kill") and at:
            if not slot.isdigit():
                raise UsageError(f"--inject {item}: SLOT must be a whole number >= 0")
            values[f"{kind.split('-')[0]}_kill_slot"] = int(slot)
            continue
        name, eq, text = item.partition("=")
        if name == "link-loss" and eq:
            try:
                loss = float(text)
            except ValueError:
                loss = math.nan
            if not 0.0 <= loss <= MAX_LINK_LOSS:
                raise UsageError(f"--inject {item}: P must be in [0, {MAX_LINK_LOSS}]")
            values["link_loss"] = loss
            continue
        raise UsageError(f"--inject {item!r}: allowed {INJECT_FORMS}")
    return Faults(**values)


class FaultInjector:
    """Strikes the planned node kills before their slot, on the nodes the run started."""

    def __init__(self, faults: Faults, supervisor: NodeSupervisor | None, state: LiveState) -> None:
        self.faults, self.supervisor, self.state = faults, supervisor, state

    def before_slot(self, slot: int) -> None:
        """SIGKILL every node planned for ``slot`` (none without a supervisor)."""
        if self.supervisor is None:
            return
        for name in self.faults.kills_before(slot):
            self.supervisor.kill(name)
            self.state.record(f"{name} killed (injected)")
