"""The two agents of one T2DRL instance, and their tensors.

:class:`T2DRLAgents` builds the allocator (D3PG or DDPG) and the caching agent (DDQN or
factored) of a resolved :class:`~agents.t2drl.config.TrainConfig` for a scenario, and hands
over and takes back their tensors by name: every network, optimiser state and the torch
generator (:meth:`T2DRLAgents.tensors`), or the acting networks only
(:meth:`T2DRLAgents.acting_state_dict`). Where the tensors are stored is the application's
(``testbed.runs.checkpoints``).
"""

from __future__ import annotations

import torch

from agents.d3pg import D3PG
from agents.ddpg import DDPG
from agents.ddqn import DDQN
from agents.factored import FactoredCaching, FactoredConfig
from agents.t2drl.amender import TorchAmender
from agents.t2drl.config import TrainConfig
from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.core.errors import CheckpointError
from testbed.core.seeding import agent_seeds


class T2DRLAgents:
    """The two agents of one T2DRL instance, sized for a scenario."""

    def __init__(self, scenario: ScenarioConfig, train: TrainConfig) -> None:
        u, m = scenario.network.num_users, scenario.catalogue.num_models
        alloc_seed, cache_seed = agent_seeds(train.seed)
        cls = D3PG if train.agent == "t2drl" else DDPG
        self.allocator: DDPG = cls(
            4 * u + m, 2 * u, train.allocator_config(), alloc_seed, mask_dim=u
        )
        self.allocator.amend = TorchAmender(u, train.steps_amender)
        sizes = build_catalogue(scenario.catalogue).size_gb
        capacity = scenario.catalogue.cache_capacity_gb
        config = train.caching_config()
        self.caching: DDQN | FactoredCaching
        if isinstance(config, FactoredConfig):
            self.caching = FactoredCaching(sizes, capacity, config, cache_seed)
        else:
            self.caching = DDQN(m, config, cache_seed, (sizes, capacity))

    def acting_modules(self) -> dict[str, torch.nn.Module]:
        """The networks the pair acts with (exploration off), by tensor-name prefix: the
        actor and the caching agent's Q. An exported policy holds these only."""
        return {
            f"{self.allocator.name}.actor.": self.allocator.modules()["actor"],
            f"{self.caching.name}.q.": self.caching.modules()["q"],
        }

    def acting_state_dict(self) -> dict[str, torch.Tensor]:
        """The acting networks' tensors, named as in :meth:`tensors`."""
        return {
            f"{prefix}{key}": value.contiguous()
            for prefix, module in self.acting_modules().items()
            for key, value in module.state_dict().items()
        }

    def load_acting(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load only the acting networks from ``tensors`` (a full checkpoint's or an
        exported policy's), refused if any of them is missing, NaN or infinite: a run whose
        training state overflowed (e.g. Adam's moments) still acts if these are finite."""
        for prefix, module in self.acting_modules().items():
            state = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            if not state:
                raise CheckpointError(f"the checkpoint holds no {prefix.rstrip('.')} network")
            refuse_non_finite(state, f"the checkpoint's {prefix.rstrip('.')} network")
            module.load_state_dict(state)

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every network's and optimiser's tensors and the torch generator's state, by name
        (``<agent>.<network>.<key>``, ``<agent>.<optimiser>.<index>.<key>``)."""
        out: dict[str, torch.Tensor] = {}
        for agent in (self.allocator, self.caching):
            for name, module in agent.modules().items():
                for key, value in module.state_dict().items():
                    out[f"{agent.name}.{name}.{key}"] = value.contiguous()
            for name, opt in agent.optimizers().items():
                out.update(_optimizer_tensors(f"{agent.name}.{name}", opt))
        out["torch_generator"] = self.allocator.torch_generator.get_state()
        return out

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        """Load what :meth:`tensors` handed over."""
        for agent in (self.allocator, self.caching):
            for name, module in agent.modules().items():
                prefix = f"{agent.name}.{name}."
                module.load_state_dict(
                    {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
                )
            for name, opt in agent.optimizers().items():
                _load_optimizer(f"{agent.name}.{name}", opt, tensors)
        self.allocator.torch_generator.set_state(tensors["torch_generator"])


def _optimizer_tensors(prefix: str, opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for index, state in opt.state_dict()["state"].items():
        for key, value in state.items():
            tensor = value if torch.is_tensor(value) else torch.tensor(value)
            out[f"{prefix}.{index}.{key}"] = tensor.contiguous()
    return out


def _load_optimizer(prefix: str, opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]):
    state_dict = opt.state_dict()
    for index in range(sum(len(g["params"]) for g in state_dict["param_groups"])):
        entry = {
            k.rsplit(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"{prefix}.{index}.")
        }
        if entry:
            state_dict["state"][index] = entry
    opt.load_state_dict(state_dict)


def refuse_non_finite(tensors: dict[str, torch.Tensor], where: str) -> None:
    """Raise :class:`CheckpointError` naming the first tensors that hold NaN or inf."""
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not torch.isfinite(v).all()]
    if bad:
        raise CheckpointError(f"{where} holds non-finite values in {bad[:3]}")
