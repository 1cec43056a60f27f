"""The policy's pieces of the command line: the registry a command works on and shell completion of its versions.

The `verifarm policy` commands themselves compose several parts and live in `verifarm.policy_cli`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from verifarm.policy.registry import CheckpointRegistry
from verifarm.settings import load_settings

RootOption = typer.Option(
    None, "--root", help="checkpoint registry folder (default VERIFARM_CHECKPOINT_DIR or VERIFARM_HOME/checkpoints)"
)


def registry_at(root: Path | None) -> CheckpointRegistry:
    """The registry at `--root`, or the settings' checkpoint folder."""
    return CheckpointRegistry(root or load_settings().checkpoints)


def complete_policy_versions(incomplete: str) -> list[str]:
    """Shell completion of the published versions of the configured registry."""
    try:
        return [str(v) for v in registry_at(None).published_versions() if str(v).startswith(incomplete)]
    except Exception:  # a completion must never print a traceback into the user's shell
        return []
