"""The torch amender of T2DRL is the numpy amender of Sec. 6.2.2, to 1e-6 (property tests).

``agents.t2drl.TorchAmender`` is the differentiable second form of
``testbed.core.system_model.amend_allocation``; it takes the served mask from the slot
(``served_at_edge``), never from the normalised observation.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from agents.t2drl import TorchAmender
from testbed.core.system_model import STEP_AMENDERS, amend_allocation, served_at_edge


@st.composite
def slots(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    users = draw(st.integers(1, 18))
    models = draw(st.integers(1, 12))
    values = st.one_of(
        st.just(0.0),
        st.floats(-0.5, 1.5, width=32),
        st.floats(2.0**-100, 2.0**-33, width=32),
    )
    raw = draw(arrays(np.float32, (2 * users,), elements=values))
    cache = draw(arrays(np.bool_, (models,)))
    services = draw(arrays(np.int64, (users,), elements=st.integers(0, models - 1)))
    return raw, cache, services, draw(st.sampled_from(STEP_AMENDERS))


@settings(max_examples=400, deadline=None)
@given(slots())
def test_torch_amender_matches_amend_allocation(case) -> None:
    raw, cache, services, mode = case
    served = served_at_edge(cache, services)
    b, xi = amend_allocation(raw.astype(float), served, mode)
    executed = TorchAmender(len(services), mode)(
        torch.as_tensor(served, dtype=torch.float32)[None], torch.as_tensor(raw)[None]
    )[0].numpy()
    np.testing.assert_allclose(executed, np.concatenate([b, xi]), rtol=0, atol=1e-6)


@settings(max_examples=50, deadline=None)
@given(slots(), st.integers(2, 5))
def test_torch_amender_works_row_by_row_on_a_batch(case, batch: int) -> None:
    raw, cache, services, mode = case
    rng = np.random.default_rng(len(raw))
    raws = np.stack([raw, *rng.random((batch - 1, len(raw)), dtype=np.float32)])
    served = np.stack([served_at_edge(cache, rng.permutation(services)) for _ in range(batch)])
    executed = TorchAmender(len(services), mode)(
        torch.as_tensor(served, dtype=torch.float32), torch.as_tensor(raws)
    ).numpy()
    for row in range(batch):
        b, xi = amend_allocation(raws[row].astype(float), served[row], mode)
        np.testing.assert_allclose(executed[row], np.concatenate([b, xi]), atol=1e-6)
