"""TrainConfig is resolved against its preset when built, and ``train.json`` stores it so.

An older ``train.json`` (the shipped policies' among them) left the preset's choices as
placeholders; it reads back as the same concrete config.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from agents.t2drl import PRESETS, TrainConfig
from testbed.core.config import ScenarioConfig, build_catalogue
from testbed.runs.folder import RunFolder

OLD_FORM = {  # agents/pretrained/t2drl/train.json, as shipped
    "agent": "t2drl",
    "episodes": 500,
    "seed": 0,
    "preset": "best",
    "threads": 1,
    "checkpoint_every": 10,
    "eval_every": 5,
    "steps_amender": "",
    "caching_agent": "",
    "credit": "",
    "counterfactuals": -1,
    "allocator": {},
    "caching": {},
}

RESOLVED_FORM = {
    **OLD_FORM,
    "steps_amender": "cap",
    "caching_agent": "factored",
    "credit": "greedy",
    "counterfactuals": 8,
    "allocator": {
        "action_map": "hard",
        "teacher": "optimal",
        "objective": "clone",
        "clip_x0": True,
    },
    "caching": {},
}


def test_the_old_form_resolves_to_the_concrete_config_of_the_new_form() -> None:
    old, new = TrainConfig.from_json(OLD_FORM), TrainConfig.from_json(RESOLVED_FORM)
    assert old == new == TrainConfig(episodes=500)
    assert old.to_json() == RESOLVED_FORM


@pytest.mark.parametrize("agent", ["t2drl", "ddpg-t2drl"])
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_every_preset_resolves_alike_from_either_form(agent: str, preset: str) -> None:
    user = {"allocator": {"warmup": 150}, "caching": {"batch_size": 8}}
    old = TrainConfig.from_json({**OLD_FORM, "agent": agent, "preset": preset, **user})
    new = TrainConfig(agent=agent, preset=preset, episodes=500, **user)
    assert old == new
    assert TrainConfig.from_json(json.loads(json.dumps(new.to_json()))) == new
    assert None not in (new.steps_amender, new.caching_agent, new.credit, new.counterfactuals)
    assert new.allocator["warmup"] == 150 and new.caching["batch_size"] == 8


def test_the_presets_choices_by_hand() -> None:
    paper = TrainConfig(agent="ddpg-t2drl", preset="paper")
    assert (paper.steps_amender, paper.caching_agent, paper.credit) == ("paper", "ddqn", "explore")
    assert paper.allocator == {"actor_lr": 1e-6, "critic_lr": 1e-6}
    assert paper.caching == {"lr": 1e-6} and paper.caching_config().lr == 1e-6
    default = TrainConfig(preset="default")
    assert (default.steps_amender, default.caching_agent, default.credit) == (
        "cap",
        "ddqn",
        "explore",
    )
    assert (default.counterfactuals, default.allocator, default.caching) == (0, {}, {})
    ddpg_best = TrainConfig(agent="ddpg-t2drl", preset="best")
    assert ddpg_best.allocator == {"action_map": "hard", "teacher": "optimal", "objective": "clone"}


def test_the_users_values_win_over_the_presets() -> None:
    config = TrainConfig(
        preset="best",
        steps_amender="paper",
        caching_agent="ddqn",
        credit="explore",
        allocator={"action_map": "tanh", "actor_lr": 1e-4},
        caching={"lr": 5e-4},
    )
    assert (config.steps_amender, config.caching_agent, config.credit) == (
        "paper",
        "ddqn",
        "explore",
    )
    assert config.counterfactuals == 0  # the preset's 8 come with its greedy credit only
    assert config.allocator == {
        "action_map": "tanh",
        "teacher": "optimal",
        "objective": "clone",
        "clip_x0": True,
        "actor_lr": 1e-4,
    }
    assert config.allocator_config().action_map == "tanh"
    assert type(config.caching_config()).__name__ == "DDQNConfig"
    assert config.caching_config().lr == 5e-4
    assert (
        TrainConfig(preset="paper", allocator={"actor_lr": 1e-3}).allocator_config().actor_lr
        == 1e-3
    )
    old = {**OLD_FORM, "preset": "paper", "allocator": {"critic_lr": 2e-5}}
    assert TrainConfig.from_json(old).allocator == {"actor_lr": 1e-6, "critic_lr": 2e-5}


def test_a_resolved_config_stays_resolved_when_replaced_or_rebuilt() -> None:
    config = TrainConfig(preset="paper", allocator={"actor_hidden": (64, 64)})
    assert config.allocator["actor_hidden"] == [64, 64]  # as JSON reads it back
    assert config.allocator_config().actor_hidden == (64, 64)
    longer = replace(config, episodes=7)
    assert longer.episodes == 7 and longer.allocator == config.allocator
    assert TrainConfig(**config.to_json()) == config


def test_a_resolved_train_json_round_trips_through_the_run_folder(tmp_path: Path) -> None:
    config = TrainConfig(agent="ddpg-t2drl", preset="best", credit="greedy", counterfactuals=3)
    folder = RunFolder(tmp_path)
    folder.write_train(config)
    stored = json.loads((tmp_path / "train.json").read_text())
    assert stored["counterfactuals"] == 3 and stored["caching_agent"] == "factored"
    assert stored == config.to_json()
    assert folder.read_train() == config
    (tmp_path / "train.json").write_text(json.dumps(OLD_FORM))
    assert folder.read_train() == TrainConfig(episodes=500)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"agent": "ppo"}, "agent = 'ppo'"),
        ({"preset": "fast"}, "preset = 'fast'"),
        ({"steps_amender": ""}, "steps_amender = ''"),
        ({"caching_agent": "lru"}, "caching_agent = 'lru'"),
        ({"credit": "half"}, "credit = 'half'"),
        ({"counterfactuals": -1}, "counterfactuals = -1"),
        ({"credit": "explore", "counterfactuals": 2}, "counterfactuals > 0 needs credit"),
        ({"episodes": 0}, "episodes = 0"),
        ({"threads": True}, "threads = True"),
        ({"bogus": 1}, "['bogus']"),
        ({"allocator": {"nope": 1}}, "unknown D3PGConfig key(s) ['nope']"),
        ({"allocator": 3}, "allocator = 3"),
        ({"allocator": {"objective": "imitate"}}, "objective = 'imitate'"),
        ({"caching": {"explore_keep": 0}}, "explore_keep = 0"),
    ],
)
def test_bad_values_name_the_key(values: dict, message: str) -> None:
    with pytest.raises((ValueError, TypeError)) as info:
        TrainConfig.from_options(values)
    assert message in str(info.value)
    stored = {**RESOLVED_FORM, **values}
    if values in ({"steps_amender": ""}, {"counterfactuals": -1}):  # the old form's "unset"
        assert TrainConfig.from_json(stored) == TrainConfig.from_json(RESOLVED_FORM)
        return
    with pytest.raises((ValueError, TypeError)) as info:
        TrainConfig.from_json(stored)
    assert message in str(info.value)


@pytest.mark.parametrize("agent", ["t2drl", "ddpg-t2drl"])
def test_the_shipped_policies_still_load(agent: str) -> None:
    """Their train.json are in the old form; they load, resolved, with the `cap` amender."""
    from agents.factored import FactoredCaching
    from agents.t2drl import SHIPPED_POLICIES_DIR
    from testbed.sim.policies import PRETRAINED_REF, make_policies

    stored = json.loads((SHIPPED_POLICIES_DIR / agent / "train.json").read_text())
    assert stored == {**OLD_FORM, "agent": agent}
    config = ScenarioConfig()
    caching, allocation = make_policies(
        agent, config, build_catalogue(config.catalogue), PRETRAINED_REF
    )
    assert isinstance(caching.agent, FactoredCaching) and allocation.steps_amender == "cap"
    assert RunFolder(SHIPPED_POLICIES_DIR / agent).read_train().counterfactuals == 8
