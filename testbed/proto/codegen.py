"""Regenerate the gRPC stubs of the live testbed from the ``.proto`` files beside this one.

    python -m testbed.proto.codegen            # rewrite the committed *_pb2*.py stubs
    python -m testbed.proto.codegen --out DIR  # write them under DIR instead (for the test
                                               # that fails when the committed stubs differ)

Stubs are generated with the pinned ``grpcio-tools`` (see pyproject.toml); the imports in
them are absolute (``testbed.proto.common_pb2``) because the protos are compiled from the
repository root.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

PROTO_DIR = Path(__file__).resolve().parent
ROOT = PROTO_DIR.parents[1]
PROTOS = ("common.proto", "users.proto", "edge.proto", "cloud.proto")


def generate(out: Path = ROOT) -> list[Path]:
    """Compile every proto into ``out`` (the repository root by default); returns the stubs."""
    from grpc_tools import protoc

    out.mkdir(parents=True, exist_ok=True)
    for name in PROTOS:
        source = f"testbed/proto/{name}"
        args = [
            "protoc",
            f"-I{ROOT}",
            f"--python_out={out}",
            f"--pyi_out={out}",
            f"--grpc_python_out={out}",
            source,
        ]
        if protoc.main(args) != 0:
            raise RuntimeError(f"protoc failed on {source}")
    return sorted((out / "testbed" / "proto").glob("*_pb2*.py*"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT)
    args = parser.parse_args(argv)
    for path in generate(args.out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
