"""``testbed edge-node``, ``testbed cloud-node``, ``testbed ue-emulator``: start one node of
the live testbed and serve until SIGINT or SIGTERM (``testbed run`` starts all three)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_node.executor import DTYPES
from testbed.commands.common import add_security_flags, add_threads, security_options, set_handler
from testbed.live.nodes import NODE_COMMANDS
from testbed.proto.security import SecurityOptions, check_address

HELP = {
    NODE_COMMANDS["edge"]: "start the edge node (model cache, RePaint, forwarding)",
    NODE_COMMANDS["cloud"]: "start the cloud node (every model, full quality, weights)",
    NODE_COMMANDS["users"]: "start the users' node (world, uploads, scoring)",
}


@dataclass(frozen=True)
class NodeOptions:
    command: str
    """The node's command, a value of ``testbed.live.nodes.NODE_COMMANDS``."""
    listen: str
    config: Path | None
    security: SecurityOptions
    node: dict[str, Any]
    """The node's own options (``cloud``, ``edge``, ``cache_dir``, ``device``, ``threads``,
    ``dtype``)."""

    @classmethod
    def from_namespace(cls, namespace: argparse.Namespace) -> NodeOptions:
        """The options of the flags, every address checked (:func:`check_address`)."""
        check_address("--listen", namespace.listen, any_port=True)
        for peer in ("cloud", "edge"):
            if getattr(namespace, peer, None) is not None:
                check_address(f"--{peer}", getattr(namespace, peer))
        own = ("cloud", "edge", "cache_dir", "device", "threads", "dtype")
        return cls(
            namespace.command,
            namespace.listen,
            Path(namespace.config) if namespace.config else None,
            security_options(namespace),
            {name: getattr(namespace, name) for name in own if hasattr(namespace, name)},
        )


def register(subparsers: argparse._SubParsersAction) -> None:
    for command, help_text in HELP.items():
        parser = subparsers.add_parser(command, help=help_text)
        parser.add_argument(
            "--listen", default="127.0.0.1:0", help="HOST:PORT (default: loopback, a free port)"
        )
        parser.add_argument("--config", default=None, help="scenario TOML (default: live CPU)")
        if command == NODE_COMMANDS["edge"]:
            parser.add_argument("--cloud", required=True, help="the cloud node's HOST:PORT")
            parser.add_argument("--cache-dir", type=Path, default=None, help="model cache folder")
        if command == NODE_COMMANDS["users"]:
            parser.add_argument("--edge", required=True, help="the edge node's HOST:PORT")
            parser.add_argument(
                "--cloud",
                default=None,
                help="the cloud's HOST:PORT, to relay to when the edge dies",
            )
        else:
            parser.add_argument("--device", default=None, help="cuda or cpu")
            add_threads(parser, "torch CPU threads")
            parser.add_argument(
                "--dtype",
                choices=DTYPES,
                default="float32",
                help="precision of the UNet (default: %(default)s; float16 not on cpu)",
            )
        add_security_flags(parser)
        set_handler(parser, NodeOptions.from_namespace, handle)


def handle(options: NodeOptions) -> int:
    from testbed.live.nodes import serve_node

    serve_node(options.command, options.config, options.listen, options.security, **options.node)
    return 0
