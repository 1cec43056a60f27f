"""HttpPolicy against a real `verifarm serve` endpoint on 127.0.0.1 (in a thread and as a process)."""

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import pytest
import torch

from verifarm.policy.http_policy import HttpPolicy, HttpPolicyError
from verifarm.policy.model import build_model
from verifarm.policy.registry import CheckpointRegistry
from verifarm.policy.sampling import LocalPolicy
from verifarm.policy.server import CompletionService, RegistryFollower, build_server
from verifarm.policy.tokenizer import build_tokenizer

PROMPTS = ["12+34=?\n", "345+678=?\n", "def f(x):\n"]


@pytest.fixture(scope="module")
def local_policy():
    tokenizer = build_tokenizer()
    return LocalPolicy(build_model("tiny", len(tokenizer), seed=2), tokenizer, version=5)


def running(service):
    server = build_server(service, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


@pytest.fixture(scope="module")
def endpoint(local_policy):
    server, url = running(CompletionService(lambda: local_policy, "tiny-moe"))
    yield url
    server.shutdown()
    server.server_close()


def post(url, body):
    request = urllib.request.Request(url + "/v1/completions", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_http_policy_matches_local_policy(endpoint, local_policy):
    remote = HttpPolicy(endpoint, "tiny-moe")
    greedy = remote.sample(PROMPTS, n=2, temperature=0, max_new_tokens=12)
    assert greedy == local_policy.sample(PROMPTS, n=2, temperature=0, max_new_tokens=12)
    assert remote.version == 5 and greedy[0][0].policy_version == 5
    sampled = remote.sample(PROMPTS, n=3, temperature=0.8, top_p=0.95, max_new_tokens=10, stop=["\n"], seed=4)
    assert sampled == local_policy.sample(PROMPTS, n=3, temperature=0.8, top_p=0.95, max_new_tokens=10,
                                          stop=["\n"], seed=4)
    assert all(len(c.token_ids) == len(c.logprobs) > 0 for row in sampled for c in row)
    via_v1 = HttpPolicy(endpoint + "/v1", "tiny-moe").sample(PROMPTS[:1], n=1, temperature=0, max_new_tokens=12)
    # A different batch (no padding) changes float rounding, not the tokens.
    assert via_v1[0][0].token_ids == greedy[0][0].token_ids and via_v1[0][0].text == greedy[0][0].text
    torch.testing.assert_close(via_v1[0][0].logprobs, greedy[0][0].logprobs, rtol=1e-4, atol=1e-5)


def test_response_is_openai_shaped(endpoint):
    status, reply = post(endpoint, {"model": "tiny-moe", "prompt": "1+1=?\n", "n": 2, "max_tokens": 5,
                                    "temperature": 0, "logprobs": 0})
    assert status == 200 and reply["object"] == "text_completion"
    assert [c["index"] for c in reply["choices"]] == [0, 1]
    choice = reply["choices"][0]
    assert len(choice["logprobs"]["tokens"]) == len(choice["logprobs"]["token_logprobs"]) == 5
    assert choice["finish_reason"] in ("stop", "length")
    assert reply["usage"]["completion_tokens"] == sum(len(c["token_ids"]) for c in reply["choices"])
    assert reply["usage"]["prompt_tokens"] == 1 + len("1+1=?\n")
    with urllib.request.urlopen(endpoint + "/v1/models", timeout=10) as models:
        assert json.loads(models.read())["data"][0]["id"] == "tiny-moe"


@pytest.mark.parametrize("body, status, message", [
    ({"model": "other", "prompt": "x"}, 404, "not served here"),
    ({"model": "tiny-moe", "prompt": [1, 2]}, 400, "prompt must be"),
    ({"model": "tiny-moe", "prompt": "x", "temperature": -1}, 400, "temperature"),
    ({"model": "tiny-moe", "prompt": "x", "n": "3"}, 400, "n must be an integer"),
    ({"model": "tiny-moe", "prompt": "x", "n": 5000}, 400, "exceeds"),
    ({"model": "tiny-moe", "prompt": ["x"] * 64, "n": 64, "max_tokens": 8000}, 400, "KV cache"),
])
def test_bad_requests_get_clear_errors(endpoint, body, status, message):
    code, reply = post(endpoint, body)
    assert code == status and message in reply["error"]["message"]


def test_http_policy_reports_server_errors(endpoint):
    with pytest.raises(HttpPolicyError, match="404"):
        HttpPolicy(endpoint, "no-such-model").sample(["x"], max_new_tokens=2)
    with pytest.raises(ValueError, match="top_p"):
        HttpPolicy(endpoint, "tiny-moe").sample(["x"], top_p=2.0)
    with pytest.raises(HttpPolicyError, match="failed"):
        HttpPolicy("http://127.0.0.1:9", "tiny-moe", timeout_s=5).sample(["x"], max_new_tokens=2)


def test_registry_follower_serves_each_newly_published_version(tmp_path):
    tokenizer = build_tokenizer()
    registry = CheckpointRegistry(tmp_path)
    registry.publish(build_model("tiny", len(tokenizer), seed=1), tokenizer, {"note": "first"})
    server, url = running(CompletionService(RegistryFollower(tmp_path), "tiny-moe"))
    try:
        remote = HttpPolicy(url, "tiny-moe")
        first = remote.sample(["1+2=?\n"], temperature=0, max_new_tokens=8)
        assert remote.version == 1 and first[0][0].policy_version == 1
        registry.publish(build_model("tiny", len(tokenizer), seed=9), tokenizer, {"note": "second"})
        second = remote.sample(["1+2=?\n"], temperature=0, max_new_tokens=8)
        assert remote.version == 2 and second[0][0].policy_version == 2
        assert second != first
    finally:
        server.shutdown()
        server.server_close()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_serve_command_serves_a_checkpoint_folder(tmp_path, local_policy):
    local_policy.model.save_pretrained(tmp_path)
    local_policy.tokenizer.save_pretrained(tmp_path)
    port = free_port()
    command = [sys.executable, "-c", "import typer; from verifarm.policy.server import serve; typer.run(serve)",
               "--checkpoint", str(tmp_path), "--version", "5", "--port", str(port), "--model-name", "tiny-moe"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={"OMP_NUM_THREADS": "1", **__import__("os").environ})
    try:
        remote = HttpPolicy(f"http://127.0.0.1:{port}", "tiny-moe", timeout_s=30)
        deadline = time.monotonic() + 90
        while True:
            try:
                result = remote.sample(PROMPTS, n=1, temperature=0, max_new_tokens=12)
                break
            except HttpPolicyError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(process.stdout.read().decode() if process.poll() is not None else "timeout")
                time.sleep(0.5)
        assert result == local_policy.sample(PROMPTS, n=1, temperature=0, max_new_tokens=12)
    finally:
        process.terminate()
        process.wait(timeout=30)
