"""``testbed config``: print the scenario as TOML, or write it (defaults: Table 2)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from testbed.commands.common import add_scenario_flags, scenario_options, set_handler
from testbed.commands.overrides import ScenarioOptions
from testbed.core.config import save_config
from testbed.core.outputs import check_out_file


@dataclass(frozen=True)
class ConfigOptions:
    scenario: ScenarioOptions
    out: Path | None
    """A TOML file to write; None: print the scenario."""
    overwrite: bool

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> ConfigOptions:
        out = Path(namespace.out) if namespace.out else None
        return cls(scenario_options(namespace), out, namespace.overwrite)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("config", help="print or write the scenario (defaults: Table 2)")
    add_scenario_flags(parser)
    parser.add_argument("--out", default=None, help="write TOML here instead of printing it")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    set_handler(parser, ConfigOptions.from_namespace, handle)


def handle(options: ConfigOptions) -> int:
    config = options.scenario.build()
    options.scenario.overrides.refuse_training()
    if options.out is not None:
        check_out_file(options.out, overwrite=options.overwrite)
        save_config(config, options.out)
        print(f"wrote {options.out}")
    else:
        import tomli_w

        print(tomli_w.dumps(config.to_dict()), end="")
    return 0
