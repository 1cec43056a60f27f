"""The registry shipped over HTTP: a worker fetches a version, verifies every file, caches it and loads it; a
corrupt or partial transfer is refused and fetched again, and the version held keeps serving meanwhile."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request

import pytest
import torch
from fastapi import FastAPI, Request
from fastapi.responses import Response, StreamingResponse

from verifarm.policy.asgi import BackgroundServer
from verifarm.policy.model import build_drafter, build_model
from verifarm.policy.registry import MANIFEST_NAME, CheckpointRegistry, CorruptCheckpoint
from verifarm.policy.remote_registry import RegistryUnreachable, RemoteRegistry, open_registry, registry_app


@pytest.fixture(scope="module")
def model(tokenizer):
    torch.manual_seed(0)
    return build_model("tiny", vocab_size=len(tokenizer))


@pytest.fixture
def served(tmp_path, model, tokenizer):
    """The trainer's side: a registry with one version, served read-only."""
    registry = CheckpointRegistry(tmp_path / "trainer")
    registry.publish(model, tokenizer, {"note": "first"})
    with BackgroundServer(registry_app(registry)) as server:
        yield registry, server


class FaultyLink:
    """A proxy in front of the registry server that spoils the next `faults` file transfers, alternating a
    flipped byte (corrupt) and a connection cut halfway (partial); everything else passes unchanged."""

    def __init__(self, upstream: str, faults: int):
        self.upstream, self.faults, self.spoiled = upstream, faults, 0
        app = FastAPI()

        @app.get("/{path:path}")
        def forward(path: str, request: Request) -> Response:
            with urllib.request.urlopen(f"{self.upstream}/{path}") as reply:
                body, status = reply.read(), reply.status
            if "/files/" not in path or self.spoiled >= self.faults:
                return Response(body, status_code=status)
            self.spoiled += 1
            if self.spoiled % 2:
                spoiled = bytearray(body)
                spoiled[len(spoiled) // 2] ^= 0xFF
                return Response(bytes(spoiled))

            def cut_halfway():
                yield body[: len(body) // 2]
                raise ConnectionResetError("link cut mid-transfer")

            return StreamingResponse(cut_halfway(), headers={"content-length": str(len(body))})

        self.server = BackgroundServer(app)

    def __enter__(self) -> FaultyLink:
        return self

    def __exit__(self, *_exc) -> None:
        self.server.stop()


def test_a_fetched_version_is_verified_cached_and_loaded(served, tmp_path):
    registry, server = served
    remote = RemoteRegistry(server.url, tmp_path / "worker-cache")
    assert remote.published_versions() == [1] and remote.latest_published() == 1
    loaded = remote.load()
    assert loaded.version == 1 and loaded.metadata["note"] == "first"
    assert loaded.checksum == registry.inspect(1).checksum
    assert loaded.path == tmp_path / "worker-cache" / "v000001"
    assert CheckpointRegistry(tmp_path / "worker-cache").inspect(1).ok  # an ordinary registry folder
    assert remote.transfers_refused == 0


def test_corrupt_and_partial_transfers_are_refused_and_fetched_again(served, tmp_path):
    _, server = served
    with FaultyLink(server.url, faults=2) as link:
        remote = RemoteRegistry(link.server.url, tmp_path / "cache", attempts=3)
        assert remote.fetch(1) == tmp_path / "cache" / "v000001"
        assert link.spoiled == 2 and remote.transfers_refused == 2
    assert CheckpointRegistry(tmp_path / "cache").inspect(1).ok
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.startswith(".tmp-")]  # no half copies left


def test_a_version_that_never_arrives_intact_leaves_the_held_one_serving(served, tmp_path, model, tokenizer):
    registry, server = served
    remote = RemoteRegistry(server.url, tmp_path / "cache")
    assert remote.newer_than(None) == 1
    registry.publish(model, tokenizer, {"note": "second"})
    with FaultyLink(server.url, faults=1000) as link:
        spoilt = RemoteRegistry(link.server.url, tmp_path / "cache", attempts=2)
        assert spoilt.newer_than(1) is None  # v2 refused twice: the worker stays on v1
        assert spoilt.transfers_refused == 2
        with pytest.raises(CorruptCheckpoint, match=r"attempt 2: .*(SHA-256 mismatch|transfer failed)"):
            spoilt.fetch(2)
    assert not (tmp_path / "cache" / "v000002").exists()
    assert remote.newer_than(1) == 2  # over a sound link it arrives


def test_an_unreachable_server_keeps_the_cached_version(served, tmp_path):
    _, server = served
    cache = tmp_path / "cache"
    RemoteRegistry(server.url, cache).fetch(1)
    server.stop()
    remote = RemoteRegistry(server.url, cache, timeout_s=2)
    with pytest.raises(RegistryUnreachable, match="cannot reach the checkpoint registry"):
        remote.published_versions()
    assert remote.newer_than(1) is None
    assert remote.load().version == 1


def test_the_server_ships_no_corrupt_version_and_no_file_outside_a_manifest(served, model, tokenizer):
    registry, server = served
    registry.publish(model, tokenizer)
    weights = sorted(registry.path(2).glob("*.safetensors"))[0]
    data = bytearray(weights.read_bytes())
    data[-64] ^= 0x01
    weights.write_bytes(bytes(data))

    def get(path: str):
        try:
            with urllib.request.urlopen(f"{server.url}/{path}") as reply:
                return reply.status, reply.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    status, body = get("index")
    assert status == 200 and json.loads(body) == {"versions": [1], "drafters": []}
    assert get(f"versions/2/files/{weights.name}")[0] == 409
    assert get("versions/1/files/..%2F.publish.lock")[0] == 404
    assert get("versions/9/manifest.json")[0] == 404
    status, body = get(f"versions/1/{MANIFEST_NAME}")
    assert status == 200 and json.loads(body)["version"] == 1


def test_open_registry_picks_the_form_from_the_settings(tmp_path):
    assert isinstance(open_registry(tmp_path, None), CheckpointRegistry)
    assert isinstance(open_registry(tmp_path, "http://198.18.0.4:8270"), RemoteRegistry)
    with pytest.raises(ValueError, match="must start with http"):
        open_registry(tmp_path, "ftp://trainer/registry")


def test_serve_registry_refuses_a_missing_registry_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from verifarm.cli import app

    result = CliRunner().invoke(app, ["policy", "serve-registry", "--root", str(tmp_path / "none")])
    assert result.exit_code == 2
    assert "no checkpoint registry at" in result.output and "Traceback" not in result.output


def test_a_worker_samples_the_fetched_version_and_swaps_in_a_newer_one(served, tmp_path, model, tokenizer):
    """CheckpointPolicySource with a registry URL samples the fetched version and swaps in a newer one."""
    from verifarm.rollout.policy_source import CheckpointPolicySource

    registry, server = served
    source = CheckpointPolicySource(tmp_path / "worker", registry_url=server.url)
    assert source.sampler("latest").version == 1
    registry.publish(model, tokenizer)
    assert source.sampler("latest").version == 2 and source.loads == 2
    assert (tmp_path / "worker" / "v000002" / MANIFEST_NAME).is_file()


def test_drafters_are_shipped_and_a_replaced_one_is_fetched_again(served, tmp_path, model):
    registry, server = served
    remote = RemoteRegistry(server.url, tmp_path / "cache")
    assert remote.drafter_versions() == [] and remote.drafter_for(1) is None
    registry.publish_drafter(1, build_drafter(model, seed=0), {"acceptance_rate": 0.5})
    drafter, info = remote.load_drafter(1)
    assert info.distilled_from == 1 and info.ok and info.acceptance_rate == 0.5
    first = (tmp_path / "cache" / "drafters" / "v000001" / MANIFEST_NAME).read_text()
    registry.publish_drafter(1, build_drafter(model, seed=1), {"acceptance_rate": 0.7})  # replaced on the server
    _, info = remote.load_drafter(1)
    assert info.acceptance_rate == 0.7
    assert (tmp_path / "cache" / "drafters" / "v000001" / MANIFEST_NAME).read_text() != first
    assert drafter.config.num_hidden_layers == 1


def test_the_serve_registry_command_serves_a_registry_to_a_worker(served, tmp_path):
    """`verifarm policy serve-registry` as a user starts it: port 0 picks a free port, which it prints."""
    registry, _ = served
    command = [sys.executable, "-m", "verifarm.cli", "policy", "serve-registry", "--root", str(registry.root)]
    server = subprocess.Popen(
        [*command, "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = server.stdout.readline()
        match = re.search(r"read-only on (http://127\.0\.0\.1:\d+)", line)
        assert match, line
        remote = RemoteRegistry(match.group(1), tmp_path / "cache")
        assert remote.published_versions() == [1]
        assert remote.load(1).checksum == registry.inspect(1).checksum
    finally:
        server.terminate()
        server.wait(30)
