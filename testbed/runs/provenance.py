"""What a run folder records about where it ran: git revision, package versions, device."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

_PACKAGES = (
    "edge-aigc-testbed",
    "numpy",
    "scipy",
    "pandas",
    "pyarrow",
    "gymnasium",
    "torch",
    "diffusers",
    "piq",
    "grpcio",
)


def git_revision(repo: Path | None = None) -> str:
    """HEAD's commit, with ``-dirty`` when the work tree has changes; ``unknown`` outside git."""
    cwd = repo or Path(__file__).resolve().parents[2]
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return f"{rev}-dirty" if dirty else rev


def package_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def device_description() -> dict[str, Any]:
    """The machine: CPU, core count, and the CUDA device when torch is already loaded."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
    }
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        info["cuda_device"] = torch.cuda.get_device_name(0)
    return info


def run_metadata(command: list[str]) -> dict[str, Any]:
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command,
        "git_revision": git_revision(),
        "packages": package_versions(),
        "device": device_description(),
    }
