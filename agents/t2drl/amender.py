"""Sec. 6.2.2 in torch: the differentiable amender through which the allocator learns."""

from __future__ import annotations

import torch

from testbed.core.system_model import STEP_AMENDERS


class TorchAmender:
    """Sec. 6.2.2 in torch, differentiable: (served mask, raw action) -> executed (b, xi).

    The served mask rho_{phi_u} comes from the slot (stored beside each transition), never
    decoded from the normalised observation, so the critic sees exactly the allocation that
    was executed; the actor's gradient flows through the normalisation (the raw action's
    scale, which the amender ignores, gets none). The torch form of
    :func:`testbed.core.system_model.amend_allocation`; a property test ties the two.
    """

    def __init__(self, num_users: int, steps_mode: str = "paper") -> None:
        if steps_mode not in STEP_AMENDERS:
            raise ValueError(f"steps amender {steps_mode!r}: allowed {list(STEP_AMENDERS)}")
        self.u, self.steps_mode = num_users, steps_mode

    def __call__(self, served: torch.Tensor, raw: torch.Tensor) -> torch.Tensor:
        u = self.u
        b_raw = raw[:, :u].clamp_min(0.0)
        b_total = b_raw.sum(dim=1, keepdim=True)
        b = torch.where(b_total > 0, b_raw / _nonzero(b_total), torch.full_like(b_raw, 1 / u))
        xi_raw = raw[:, u:].clamp_min(0.0) * served
        xi_total = xi_raw.sum(dim=1, keepdim=True)
        if self.steps_mode == "cap":
            xi = xi_raw / xi_total.clamp_min(1.0)
        else:
            even = served / served.sum(dim=1, keepdim=True).clamp_min(1.0)
            xi = torch.where(xi_total > 0, xi_raw / _nonzero(xi_total), even)
        return torch.cat([b, xi], dim=1)


def _nonzero(total: torch.Tensor) -> torch.Tensor:
    """``total`` with zeros replaced by 1 (the branch torch.where then discards), as numpy's
    amenders do, so that any positive total, however small, divides exactly."""
    return torch.where(total > 0, total, torch.ones_like(total))
