"""The README's "Using the farm" block, read from the README itself and run as written on a fresh home.

It must end with data: passing rollouts stored, exported, and a newer policy version published by the trainer.
Only the servers, `verifarm serve` and `verifarm dashboard`, are left out (they serve until stopped; their own tests
cover them).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"


def farm_block(readme: str) -> str:
    """The first bash block under the "Using the farm" heading."""
    section = readme.split("\n## Using the farm\n", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match, "the README's Using the farm section has no bash block"
    return match.group(1)


SERVERS = ("verifarm serve", "verifarm dashboard")


def without_servers(block: str) -> str:
    lines = block.splitlines()
    for server in SERVERS:
        assert sum(line.strip().startswith(server) for line in lines) == 1, (
            f"the block is expected to hold one `{server}`"
        )
    return "\n".join(line for line in lines if not line.strip().startswith(SERVERS)) + "\n"


def test_the_block_is_found_and_keeps_its_shape() -> None:
    block = farm_block(README.read_text())
    assert "verifarm policy init" in block and "verifarm campaign submit examples/campaign.yaml" in block
    kept = without_servers(block)
    assert "verifarm train run" in block and not any(server in kept for server in SERVERS)


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_the_readme_farm_path_stores_passing_rollouts_and_publishes_a_newer_policy(tmp_path: Path) -> None:
    from verifarm.policy.registry import CheckpointRegistry
    from verifarm.rollout.embedded_redis import EmbeddedRedis
    from verifarm.rollout.store import RecordFilter, RolloutStore

    workdir = tmp_path / "work"  # the block's relative paths (examples/, out.jsonl) resolve here
    shutil.copytree(REPO / "examples", workdir / "examples")
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VERIFARM_")}
    env["VERIFARM_HOME"] = str(home)
    script = "set -euo pipefail\n" + without_servers(farm_block(README.read_text())) + "kill %1\nwait\n"
    log = tmp_path / "block.log"
    with open(log, "wb") as output:
        # Its own session: the background worker pool is stopped with the whole group whatever happens.
        process = subprocess.Popen(
            ["bash", "-c", script],
            cwd=workdir,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = process.wait(timeout=2200)
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait(timeout=60)
            try:
                os.killpg(process.pid, signal.SIGKILL)  # anything left of the group (a worker pool)
            except ProcessLookupError:
                pass
            EmbeddedRedis(home / "redis").stop_recorded()
    transcript = log.read_text(errors="replace")
    assert returncode in (0, 143), transcript[-6000:]  # 143: `wait` reports the worker pool's SIGTERM

    with RolloutStore(f"sqlite:///{home / 'rollouts.db'}") as store:
        passing = store.count(RecordFilter(outcome="pass"))
        stored = store.count(RecordFilter())
    assert stored == 256, transcript[-6000:]
    assert passing > 0, "the example campaign passed nothing: policy init's pre-training is too short"
    exported = (workdir / "out.jsonl").read_text().splitlines()
    assert 0 < len(exported) <= passing
    registry = CheckpointRegistry(home / "checkpoints")
    newest = registry.load(None)
    assert newest.version >= 2 and newest.metadata["source"] == "trainer", transcript[-4000:]
    assert newest.metadata["kind_counts"].get("rft", 0) > 0, "the trainer never trained on the passing rollouts"
    assert "Traceback" not in transcript and "DuplicateTaskNameWarning" not in transcript, transcript[-6000:]
