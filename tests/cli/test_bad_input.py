"""Every `verifarm` command given bad input: exit 2 (bad input) or 1 (a runtime failure), one line on stderr that
names the problem, no traceback, nothing stored or changed.

The cases run in-process through the root command (as the `verifarm` script does); two run the real entry point
in a subprocess, with and without `--debug`. `SERVE_CASES` is where the server's rows go.
"""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis
import yaml
from typer.testing import CliRunner

from verifarm.cli import app
from verifarm.envs.catalog import FamilyCache
from verifarm.rollout.campaign import parse_spec
from verifarm.rollout.embedded_redis import EmbeddedRedis
from verifarm.rollout.reference_policy import ReferencePolicy
from verifarm.rollout.rollouts import rollout_batch
from verifarm.rollout.store import RolloutStore

SPEC = {
    "name": "bad-input",
    "envs": [{"env_id": "verifarm/Addition-v0", "max_difficulty": 2}],
    "tasks": 4,
    "samples_per_task": 2,
    "batch_size": 2,
    "policy": "reference",
    "reference_corruption": 0.5,
}
FINISHED = "finished-1"
REDIS_DOWN = "redis://127.0.0.1:1/0"
STORE_DOWN = "postgresql://postgres@127.0.0.1:1/test"  # nothing listens on port 1
ROLE_REFUSED = "postgresql://no_such_role_vf@127.0.0.1:5432/test"


@dataclass(frozen=True)
class BadInputCase:
    """One command line (`{home}`/`{files}` are filled in), its environment changes, and what it must say."""

    args: tuple[str, ...]
    exit_code: int
    says: str  # a fragment of the one stderr line, naming the problem
    env: dict[str, str | None] = field(default_factory=dict)  # None unsets a variable

    @property
    def id(self) -> str:
        return " ".join(self.args)[:70]


CASES: list[BadInputCase] = [
    # the root command
    BadInputCase(("no-such-command",), 2, "No such command"),
    BadInputCase(("--bogus",), 2, "No such option"),
    BadInputCase(("demo", "--workers", "-1"), 2, "workers must be >= 0, got -1"),
    # sandbox
    BadInputCase(("sandbox", "info", "--bogus"), 2, "No such option"),
    BadInputCase(("sandbox", "build-image", "--bogus"), 2, "No such option"),
    BadInputCase(("sandbox", "check-humaneval", "--limit", "many"), 2, "--limit"),
    BadInputCase(("sandbox", "check-humaneval", "--backend", "nope", "--limit", "1"), 2, "unknown sandbox backend"),
    # envs
    BadInputCase(("envs", "list", "--bogus"), 2, "No such option"),
    BadInputCase(("envs", "show", "verifarm/Nope-v0"), 2, "unknown env id"),
    BadInputCase(("envs", "show", "verifarm/Addition-v0", "-d", "99"), 2, "outside this env's range"),
    BadInputCase(("envs", "show", "verifarm/Addition-v0", "-o", "novalue"), 2, "key=value"),
    BadInputCase(("envs", "verify", "verifarm/Addition-v0", "{files}/missing.txt"), 2, "is not a file"),
    # policy
    BadInputCase(("policy", "init"), 1, "already holds versions"),
    BadInputCase(("policy", "init", "--root", "{files}/fresh", "--preset", "huge"), 2, "unknown preset"),
    BadInputCase(("policy", "init", "--root", "{files}/fresh", "--corpus", "{files}/missing.txt"), 2, "is not a file"),
    BadInputCase(
        ("policy", "init", "--root", "{files}/fresh", "--random", "--corpus", "{files}/spec.yaml"), 2, "--random"
    ),
    BadInputCase(("policy", "ls", "--root"), 2, "requires an argument"),
    BadInputCase(("policy", "verify", "--version", "99"), 2, "no version 99"),
    BadInputCase(("policy", "drafter", "--version", "99"), 2, "no version 99"),
    BadInputCase(("policy", "drafter", "--difficulty", "99"), 2, "outside verifarm/Addition-v0's range"),
    BadInputCase(("policy", "drafter", "--env", "verifarm/Nope-v0"), 2, "unknown env id"),
    BadInputCase(("policy", "serve-registry", "--root", "{files}/missing"), 2, "no checkpoint registry at"),
    BadInputCase(("policy", "serve-registry", "--port", "99999"), 2, "port must lie"),
    # workers
    BadInputCase(("workers", "ls"), 1, "cannot reach the Redis broker", {"VERIFARM_REDIS_URL": REDIS_DOWN}),
    BadInputCase(("workers", "start"), 1, "cannot reach the Redis broker", {"VERIFARM_REDIS_URL": REDIS_DOWN}),
    BadInputCase(("workers", "start"), 1, "cannot open the store", {"VERIFARM_DATABASE_URL": STORE_DOWN}),
    BadInputCase(("workers", "start"), 1, "refused the credentials", {"VERIFARM_DATABASE_URL": ROLE_REFUSED}),
    BadInputCase(("workers", "start", "--concurrency", "0"), 2, "--concurrency"),
    BadInputCase(
        ("workers", "start"), 1, "cannot reach the checkpoint registry", {"VERIFARM_REGISTRY_URL": "http://127.0.0.1:1"}
    ),
    BadInputCase(("workers", "start"), 2, "must start with http", {"VERIFARM_REGISTRY_URL": "ftp://trainer/registry"}),
    # campaign
    BadInputCase(("campaign", "submit", "{files}/missing.yaml"), 2, "does not exist"),
    BadInputCase(("campaign", "submit", "{files}/bad.yaml"), 2, "unknown env id"),
    BadInputCase(
        ("campaign", "submit", "{files}/spec.yaml"),
        1,
        "cannot reach the Redis broker",
        {"VERIFARM_REDIS_URL": REDIS_DOWN},
    ),
    BadInputCase(
        ("campaign", "submit", "{files}/spec.yaml"), 1, "cannot open the store", {"VERIFARM_DATABASE_URL": STORE_DOWN}
    ),
    BadInputCase(
        ("campaign", "submit", "{files}/spec.yaml"),
        1,
        "cannot open the store",
        {"VERIFARM_DATABASE_URL": STORE_DOWN, "VERIFARM_REDIS_URL": None},
    ),  # no private Redis started
    BadInputCase(
        ("workers", "start"),
        1,
        "cannot open the store",
        {"VERIFARM_DATABASE_URL": STORE_DOWN, "VERIFARM_REDIS_URL": None},
    ),
    BadInputCase(
        ("campaign", "submit", "{files}/spec.yaml"),
        2,
        "VERIFARM_DATABASE_URL",
        {"VERIFARM_DATABASE_URL": "mysql://someone@host/db"},
    ),
    BadInputCase(("campaign", "status", "nope"), 2, "no campaign"),
    BadInputCase(("campaign", "list", "--bogus"), 2, "No such option"),
    BadInputCase(("campaign", "cancel", FINISHED), 1, "already done"),
    BadInputCase(("campaign", "cancel", "nope"), 2, "no campaign"),
    BadInputCase(("campaign", "requeue", "nope"), 2, "no campaign"),
    BadInputCase(("campaign", "watch", "nope"), 2, "no campaign"),
    # data
    BadInputCase(("data", "ls", "--outcome", "maybe"), 2, "outcome must be one of"),
    BadInputCase(("data", "show", "zzzz"), 2, "no record"),
    BadInputCase(("data", "export", "{files}/no/such/folder/out.jsonl"), 2, "does not exist"),
    BadInputCase(("data", "export", "/proc/verifarm-out.jsonl"), 1, "cannot write"),
    BadInputCase(("data", "export", "{files}/out.jsonl", "--campaign", "nope"), 1, "no records match"),
    BadInputCase(("data", "export", "{files}/out.jsonl", "--format", "csv"), 2, "jsonl"),
    BadInputCase(("data", "export", "{files}/split", "--test-fraction", "0.001"), 1, "split would be empty"),
    # train
    BadInputCase(("train", "run", "--config", "{files}/missing.yaml"), 2, "does not exist"),
    BadInputCase(("train", "run", "--config", "{files}/trainer.yaml"), 2, "unknown trainer config keys"),
    BadInputCase(("train", "run", "--max-steps", "0"), 2, "--max-steps"),
    BadInputCase(("train", "run"), 1, "cannot open the store", {"VERIFARM_DATABASE_URL": STORE_DOWN}),
    BadInputCase(("train", "start", "--config", "{files}/missing.yaml"), 2, "does not exist"),
    BadInputCase(("train", "start"), 1, "cannot open the store", {"VERIFARM_DATABASE_URL": STORE_DOWN}),
    BadInputCase(("train", "stop", "--timeout", "soon"), 2, "--timeout"),
    BadInputCase(("train", "status", "--last", "0"), 2, "--last"),
    BadInputCase(("train", "eval", "--version", "99"), 2, "no policy version 99"),
    # verify
    BadInputCase(("verify", "audit", "verifarm/MathAnswer-v0", "{files}/missing.jsonl"), 2, "cases file not found"),
    BadInputCase(("verify", "audit", "verifarm/MathAnswer-v0", "{files}/spec.yaml"), 2, "not valid JSON"),
    BadInputCase(("data", "reverify", "--limit", "0"), 2, "--limit"),
    BadInputCase(("data", "translations", "--limit", "0"), 2, "--limit"),
    # dashboard
    BadInputCase(("dashboard", "--port", "99999"), 2, "port must lie"),
]

# `verifarm serve`: a busy port and a corrupt version are refused in tests/policy/test_server.py (they need a
# bound socket and a damaged registry); these are the rows the shared farm home can hold.
SERVE_CASES: list[BadInputCase] = [
    BadInputCase(("serve", "--version", "99"), 2, "no policy version 99"),
    BadInputCase(("serve", "--port", "99999"), 2, "port must lie"),
    BadInputCase(("serve", "--checkpoint", "{files}/missing"), 2, "not a Hugging Face checkpoint"),
]

# Commands whose bad input is tested elsewhere; every other command must have a row above.
COVERED_ELSEWHERE: set[str] = set() if SERVE_CASES else {"serve"}


@pytest.fixture(scope="module")
def farm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path | str]]:
    """A home with policy v1, a store with one finished campaign, input files, and a private Redis."""
    import torch

    from verifarm.policy.model import build_model
    from verifarm.policy.registry import CheckpointRegistry
    from verifarm.policy.tokenizer import build_tokenizer

    root = tmp_path_factory.mktemp("farm")
    home, files = root / "home", root / "files"
    files.mkdir()
    torch.set_num_threads(1)
    tokenizer = build_tokenizer()
    CheckpointRegistry(home / "checkpoints").publish(build_model("tiny", len(tokenizer), seed=0), tokenizer, {})
    spec = parse_spec(SPEC)
    with RolloutStore(f"sqlite:///{home / 'rollouts.db'}") as store:
        store.create_campaign(
            FINISHED, spec.name, spec.model_dump(mode="json"), spec.tasks, spec.samples_per_task, spec.priority
        )
        rollout_batch(store, FINISHED, spec, range(spec.tasks), ReferencePolicy(0.5, 0), FamilyCache())
    (files / "spec.yaml").write_text(yaml.safe_dump(SPEC))
    (files / "bad.yaml").write_text(yaml.safe_dump({**SPEC, "envs": [{"env_id": "verifarm/Nope-v0"}]}))
    (files / "trainer.yaml").write_text("learning_rat: 0.1\n")
    broker = EmbeddedRedis(root / "broker")
    url, pid = broker.start()
    try:
        yield {"home": home, "files": files, "broker": url}
    finally:
        broker.stop(pid)


def snapshot(home: Path, broker: str) -> dict[str, str]:
    """Everything a command could store or change: files by content, the store's rows, the broker's keys."""
    state = {}
    for path in sorted(home.rglob("*")):
        relative = path.relative_to(home).as_posix()
        if path.is_file() and not relative.startswith("rollouts.db"):
            state[relative] = hashlib.sha256(path.read_bytes()).hexdigest()
    with sqlite3.connect(home / "rollouts.db") as connection:  # rows, not bytes: the WAL may be checkpointed
        state["store"] = hashlib.sha256("\n".join(connection.iterdump()).encode()).hexdigest()
    client = redis.Redis.from_url(broker)
    state["broker"] = repr(sorted((key, client.type(key)) for key in client.keys("*")))
    return state


def run_case(case: BadInputCase, farm: dict[str, Path | str]):
    env = {
        "VERIFARM_HOME": str(farm["home"]),
        "VERIFARM_REDIS_URL": str(farm["broker"]),
        "VERIFARM_DATABASE_URL": None,
        "VERIFARM_CHECKPOINT_DIR": None,
        **case.env,
    }
    args = [arg.format(home=farm["home"], files=farm["files"]) for arg in case.args]
    return CliRunner().invoke(app, args, env=env)


@pytest.mark.parametrize("case", CASES + SERVE_CASES, ids=lambda case: case.id)
def test_bad_input_gets_one_line_and_changes_nothing(case: BadInputCase, farm) -> None:
    before = snapshot(farm["home"], farm["broker"])
    result = run_case(case, farm)
    after = snapshot(farm["home"], farm["broker"])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == case.exit_code, (result.exit_code, result.output, result.exception)
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert case.says in lines[0], lines[0]
    assert result.stdout == "", result.stdout
    assert "Traceback" not in result.output
    assert before == after, "a refused command changed the farm's state"
    for made in ("fresh", "split", "out.jsonl"):
        assert not (Path(str(farm["files"])) / made).exists(), f"a refused command left {made} behind"


@pytest.mark.parametrize(
    "args",
    [
        ("campaign", "list"),
        ("campaign", "status", "x"),
        ("campaign", "cancel", "x"),
        ("campaign", "watch", "x"),
        ("data", "ls"),
        ("data", "show", "x"),
        ("data", "export", "out.jsonl"),
    ],
)
def test_reading_a_home_where_nothing_was_stored_creates_no_store(args: tuple[str, ...], tmp_path: Path) -> None:
    home = tmp_path / "elsewhere" / ".verifarm"
    result = CliRunner().invoke(app, list(args), env={"VERIFARM_HOME": str(home), "VERIFARM_DATABASE_URL": None})
    assert result.exit_code == 1 and result.stdout == ""
    assert (
        result.stderr.count("\n") == 1 and "nothing is stored in" in result.stderr and "VERIFARM_HOME" in result.stderr
    )
    assert not home.exists()


def _leaf_commands(command, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    children = getattr(command, "commands", None)
    if not children:
        yield prefix
        return
    for name, child in children.items():
        yield from _leaf_commands(child, (*prefix, name))


def test_every_command_has_a_bad_input_case() -> None:
    import typer.main

    covered = {case.args[:2] for case in CASES + SERVE_CASES} | {case.args[:1] for case in CASES + SERVE_CASES}
    missing = [
        " ".join(path)
        for path in _leaf_commands(typer.main.get_command(app))
        if path not in covered and " ".join(path) not in COVERED_ELSEWHERE
    ]
    assert not missing, f"commands without a bad-input case: {missing}"


def test_the_real_entry_point_prints_one_line_and_a_traceback_only_with_debug(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "verifarm.cli", "envs", "show", "verifarm/Addition-v0", "-d", "99"]
    env = {"VERIFARM_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    plain = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert plain.returncode == 2 and plain.stdout == ""
    assert plain.stderr.strip().count("\n") == 0 and "outside this env's range" in plain.stderr
    debug = subprocess.run(
        [*command[:3], "--debug", *command[3:]], capture_output=True, text=True, env=env, timeout=120
    )
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr
    assert "outside this env's range" in debug.stderr
    assert not (tmp_path / "home").exists(), "showing a task stores nothing"
