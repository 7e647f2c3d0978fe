"""What the controller knows of a live run and its nodes between slots, with one owner.

:class:`LiveState` holds the run's slot counter, whether the edge is down and the log of
what happened to the nodes. The caching, the executor and the fault injector read and
change it only through its methods; whether a slot is replayed (a resumed run) it asks the
run's one :class:`~testbed.live.resume.ResumePoint`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from testbed.live.resume import ResumePoint

if TYPE_CHECKING:
    from testbed.live.nodes import NodeAddresses, NodeSupervisor


class LiveState:
    """The run's slot counter, the edge's health and the node events of one live run.

    ``nodes`` answers the edge's health check (without it the edge counts as answering);
    ``supervisor`` restarts a dead edge at the next frame when ``restart_edge`` is set.
    """

    def __init__(
        self,
        resume: ResumePoint | None = None,
        nodes: NodeAddresses | None = None,
        supervisor: NodeSupervisor | None = None,
        restart_edge: bool = False,
    ) -> None:
        self.resume = resume if resume is not None else ResumePoint()
        self.nodes, self.supervisor = nodes, supervisor
        self.restarts_edge = restart_edge and supervisor is not None
        self._slot = 0
        self._edge_down = False
        self._events: list[dict] = []

    # -- the run's slots --------------------------------------------------------------------

    @property
    def slot(self) -> int:
        """Slots of the run played so far (replayed ones of a resumed run included): the
        index, counted over the whole run from 0, of the slot being played."""
        return self._slot

    @property
    def slots_finished(self) -> int:
        """Slots of the run whose results are on disk (a resumed run's kept ones included)."""
        return max(self._slot, self.resume.first_slot)

    def replays_slot(self) -> bool:
        """Whether the slot being played was finished by the interrupted run: the world and
        the policies replay it (their draws stay in step), the nodes do not serve it."""
        return self.resume.replays_slot(self._slot)

    def replays_frame(self, slots_per_frame: int) -> bool:
        """Whether every slot of the frame starting now was finished by the interrupted run
        (its cache decision is not applied again)."""
        return self.resume.replays_slot(self._slot + slots_per_frame - 1)

    def slot_played(self) -> None:
        self._slot += 1

    # -- what happened ----------------------------------------------------------------------

    @property
    def events(self) -> list[dict]:
        """What happened to the nodes, and when (``slot`` counted over the run)."""
        return list(self._events)

    def record(self, event: str) -> None:
        """Log ``event`` at the slot being played."""
        self._events.append({"slot": self._slot, "event": event})

    # -- the edge ---------------------------------------------------------------------------

    @property
    def edge_down(self) -> bool:
        """The edge stopped answering: requests are relayed straight to the cloud."""
        return self._edge_down

    def edge_answers(self) -> bool:
        """Whether the edge answers its health check (True when no address is known)."""
        return self.nodes is None or self.nodes.edge_serving()

    def check_edge(self, event: str) -> bool:
        """After calls to the edge failed: if it does not answer its health check, mark it
        down and log ``event``. Returns whether the edge is down."""
        if not self._edge_down and not self.edge_answers():
            self._edge_down = True
            self.record(event)
        return self._edge_down

    def restart_edge_if_down(self) -> None:
        """Start a dead edge again (with ``restart_edge``); it starts empty: the frame's
        cache decision refills it."""
        if self._edge_down and self.restarts_edge:
            assert self.supervisor is not None
            self.supervisor.restart("edge")
            self._edge_down = False
            self.record("edge restarted")
