"""HttpPolicy and raw HTTP against a real `verifarm serve` endpoint on 127.0.0.1 (in a thread and as a process)."""

import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import torch

from verifarm.policy.asgi import BackgroundServer, bind_socket
from verifarm.policy.http_policy import HttpPolicy, HttpPolicyError
from verifarm.policy.model import build_model
from verifarm.policy.registry import CheckpointRegistry
from verifarm.policy.sampling import LocalPolicy
from verifarm.policy.server import CompletionService, RegistryFollower, build_app
from verifarm.policy.tokenizer import build_tokenizer

PROMPTS = ["12+34=?\n", "345+678=?\n", "def f(x):\n"]


@pytest.fixture(scope="module")
def local_policy():
    tokenizer = build_tokenizer()
    return LocalPolicy(build_model("tiny", len(tokenizer), seed=2), tokenizer, version=5)


def running(service):
    return BackgroundServer(build_app(service))


@pytest.fixture(scope="module")
def endpoint(local_policy):
    with running(CompletionService(lambda: local_policy, "tiny-moe")) as server:
        yield server.url


def post(url, body, route="/v1/completions", raw=None):
    data = raw if raw is not None else json.dumps(body).encode()
    request = urllib.request.Request(
        url + route, data=data, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            text = reply.read().decode()
            if reply.headers.get_content_type() == "text/event-stream":
                return reply.status, text
            return reply.status, json.loads(text)
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_http_policy_matches_local_policy(endpoint, local_policy):
    remote = HttpPolicy(endpoint, "tiny-moe")
    greedy = remote.sample(PROMPTS, n=2, temperature=0, max_new_tokens=12)
    assert greedy == local_policy.sample(PROMPTS, n=2, temperature=0, max_new_tokens=12)
    assert remote.version == 5 and greedy[0][0].policy_version == 5
    sampled = remote.sample(PROMPTS, n=3, temperature=0.8, top_p=0.95, max_new_tokens=10, stop=["\n"], seed=4)
    assert sampled == local_policy.sample(
        PROMPTS, n=3, temperature=0.8, top_p=0.95, max_new_tokens=10, stop=["\n"], seed=4
    )
    assert all(len(c.token_ids) == len(c.logprobs) > 0 for row in sampled for c in row)
    via_v1 = HttpPolicy(endpoint + "/v1", "tiny-moe").sample(PROMPTS[:1], n=1, temperature=0, max_new_tokens=12)
    # A different batch (no padding) changes float rounding, not the tokens.
    assert via_v1[0][0].token_ids == greedy[0][0].token_ids and via_v1[0][0].text == greedy[0][0].text
    torch.testing.assert_close(via_v1[0][0].logprobs, greedy[0][0].logprobs, rtol=1e-4, atol=1e-5)


def test_response_is_openai_shaped(endpoint):
    status, reply = post(
        endpoint, {"model": "tiny-moe", "prompt": "1+1=?\n", "n": 2, "max_tokens": 5, "temperature": 0, "logprobs": 0}
    )
    assert status == 200 and reply["object"] == "text_completion"
    assert [c["index"] for c in reply["choices"]] == [0, 1]
    choice = reply["choices"][0]
    assert len(choice["logprobs"]["tokens"]) == len(choice["logprobs"]["token_logprobs"]) == 5
    assert choice["finish_reason"] in ("stop", "length")
    assert reply["usage"]["completion_tokens"] == sum(len(c["token_ids"]) for c in reply["choices"])
    assert reply["usage"]["prompt_tokens"] == 1 + len("1+1=?\n")
    with urllib.request.urlopen(endpoint + "/v1/models", timeout=10) as models:
        assert json.loads(models.read())["data"][0]["id"] == "tiny-moe"


@pytest.mark.parametrize(
    "body, status, message",
    [
        ({"model": "other", "prompt": "x"}, 404, "not served here"),
        ({"model": "tiny-moe", "prompt": [1, 2]}, 400, "prompt must be"),
        ({"model": "tiny-moe", "prompt": "x", "temperature": -1}, 400, "temperature"),
        ({"model": "tiny-moe", "prompt": "x", "n": "3"}, 400, "n must be an integer"),
        ({"model": "tiny-moe", "prompt": "x", "n": 5000}, 400, "exceeds"),
        ({"model": "tiny-moe", "prompt": ["x"] * 64, "n": 64, "max_tokens": 8000}, 400, "KV cache"),
    ],
)
def test_bad_requests_get_clear_errors(endpoint, body, status, message):
    code, reply = post(endpoint, body)
    assert code == status and message in reply["error"]["message"]
    assert reply["error"]["code"] == status and reply["error"]["type"].endswith("_error")


@pytest.mark.parametrize(
    "route, raw, status, message",
    [
        ("/v1/completions", b"{not json", 400, "not JSON"),
        ("/v1/completions", b"", 400, "need a JSON body"),
        ("/v1/chat/completions", b'{"messages": []}', 400, "messages must be"),
        ("/v1/chat/completions", b'{"messages": [{"role": "robot", "content": "hi"}]}', 400, "messages[0]"),
        ("/v1/chat/completions", b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}', 400, "stream"),
        ("/v1/nowhere", b"{}", 404, "no route POST /v1/nowhere"),
        ("/v1/models", b"{}", 405, "no route POST /v1/models"),
    ],
    ids=["bad-json", "empty", "no-messages", "bad-role", "bad-stream", "no-route", "wrong-method"],
)
def test_malformed_requests_get_openai_shaped_errors(endpoint, route, raw, status, message):
    code, reply = post(endpoint, None, route=route, raw=raw)
    assert code == status
    assert set(reply["error"]) == {"message", "type", "param", "code"} and message in reply["error"]["message"]


def test_an_oversized_body_is_refused_before_it_is_read(endpoint):
    import http.client

    connection = http.client.HTTPConnection("127.0.0.1", int(endpoint.rsplit(":", 1)[1]), timeout=30)
    connection.putrequest("POST", "/v1/completions")
    connection.putheader("Content-Type", "application/json")
    connection.putheader("Content-Length", str(64 << 20))
    connection.endheaders()  # no body follows: the server must answer from the header alone
    reply = connection.getresponse()
    assert reply.status == 413 and "at most" in json.loads(reply.read())["error"]["message"]
    connection.close()


def test_chat_completion_applies_the_chat_template(endpoint, local_policy):
    messages = [{"role": "system", "content": "Add."}, {"role": "user", "content": "12+34=?"}]
    status, reply = post(
        endpoint,
        {"model": "tiny-moe", "messages": messages, "max_tokens": 8, "temperature": 0, "n": 2},
        route="/v1/chat/completions",
    )
    assert status == 200 and reply["object"] == "chat.completion"
    prompt = "system: Add.\nuser: 12+34=?\nassistant: "
    expected = local_policy.sample([prompt], n=2, temperature=0, max_new_tokens=8)[0]
    assert [c["message"] for c in reply["choices"]] == [{"role": "assistant", "content": e.text} for e in expected]
    assert reply["usage"]["prompt_tokens"] == len(local_policy.tokenizer(prompt)["input_ids"])


def test_streaming_sends_server_sent_events(endpoint):
    body = {"model": "tiny-moe", "prompt": ["1+1=?\n", "2+2=?\n"], "max_tokens": 4, "temperature": 0}
    _, whole = post(endpoint, body)
    status, events = post(endpoint, {**body, "stream": True})
    assert status == 200 and events.endswith("data: [DONE]\n\n")
    chunks = [json.loads(line.removeprefix("data: ")) for line in events.split("\n\n")[:-2]]
    assert [c["choices"][0]["text"] for c in chunks] == [c["text"] for c in whole["choices"]]
    status, events = post(
        endpoint,
        {"model": "tiny-moe", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": True},
        route="/v1/chat/completions",
    )
    deltas = [json.loads(line.removeprefix("data: "))["choices"][0]["delta"] for line in events.split("\n\n")[:-2]]
    assert deltas[0] == {"role": "assistant"} and "content" in deltas[1] and deltas[2] == {}


def test_metrics_count_requests_and_tokens(endpoint):
    with urllib.request.urlopen(endpoint + "/metrics", timeout=10) as reply:
        before = reply.read().decode()
    post(endpoint, {"model": "tiny-moe", "prompt": "3+4=?\n", "max_tokens": 3, "temperature": 0})
    with urllib.request.urlopen(endpoint + "/metrics", timeout=10) as reply:
        after = reply.read().decode()

    def value(text, name):
        lines = [line for line in text.splitlines() if line.startswith(name + " ")]
        return float(lines[0].split()[-1]) if lines else 0.0

    requests = 'verifarm_server_requests_total{route="completions",status="200"}'
    assert value(after, requests) == value(before, requests) + 1
    assert value(after, "verifarm_server_completion_tokens_total") > value(
        before, "verifarm_server_completion_tokens_total"
    )
    assert "verifarm_server_sampling_seconds_bucket" in after


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
    server = running(CompletionService(RegistryFollower(tmp_path), "tiny-moe"))
    try:
        remote = HttpPolicy(server.url, "tiny-moe")
        first = remote.sample(["1+2=?\n"], temperature=0, max_new_tokens=8)
        assert remote.version == 1 and first[0][0].policy_version == 1
        registry.publish(build_model("tiny", len(tokenizer), seed=9), tokenizer, {"note": "second"})
        second = remote.sample(["1+2=?\n"], temperature=0, max_new_tokens=8)
        assert remote.version == 2 and second[0][0].policy_version == 2
        assert second != first
    finally:
        server.stop()


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.slow
def test_serve_command_serves_a_checkpoint_folder(tmp_path, local_policy):
    local_policy.model.save_pretrained(tmp_path)
    local_policy.tokenizer.save_pretrained(tmp_path)
    port = free_port()
    command = [*SERVE, "--checkpoint", str(tmp_path), "--version", "5", "--port", str(port), "--model-name", "tiny-moe"]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={"OMP_NUM_THREADS": "1", **__import__("os").environ},
    )
    try:
        remote = HttpPolicy(f"http://127.0.0.1:{port}", "tiny-moe", timeout_s=30)
        deadline = time.monotonic() + 90
        while True:
            try:
                result = remote.sample(PROMPTS, n=1, temperature=0, max_new_tokens=12)
                break
            except HttpPolicyError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        process.stdout.read().decode() if process.poll() is not None else "timeout"
                    ) from None
                time.sleep(0.5)
        assert result == local_policy.sample(PROMPTS, n=1, temperature=0, max_new_tokens=12)
    finally:
        process.terminate()
        process.wait(timeout=30)
    # A plain Hugging Face folder (no registry manifest) is served, with a one-line warning.
    assert (
        f"warning: {tmp_path} carries no registry manifest.json: serving it unverified"
        in process.stdout.read().decode()
    )


SERVE = [sys.executable, "-c", "import typer; from verifarm.policy.server import serve; typer.run(serve)"]


def serve_refusal(*args):
    """Run `serve` expecting a refusal: exit status 2 and exactly one line on stderr, no traceback."""
    done = subprocess.run([*SERVE, *args], capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    return lines[0]


def test_serve_refuses_a_busy_port_in_one_line(tmp_path):
    with bind_socket("127.0.0.1", 0) as taken:
        port = taken.getsockname()[1]
        line = serve_refusal("--registry", str(tmp_path), "--port", str(port))
    assert line == f"error: 127.0.0.1:{port} is already in use; pick another with --port (or --host)"


@pytest.fixture
def published(tmp_path, local_policy):
    registry = CheckpointRegistry(tmp_path / "registry")
    registry.publish(local_policy.model, local_policy.tokenizer, {"note": "served"})
    return registry


def test_serve_refuses_a_corrupt_version_in_one_line(published):
    with open(published.path(1) / "model.safetensors", "r+b") as weights:
        weights.seek(-8, 2)
        weights.write(b"\x00" * 8)
    line = serve_refusal("--registry", str(published.root), "--version", "1", "--port", str(free_port()))
    assert line.startswith("error: checkpoint v1 at") and "SHA-256 mismatch in model.safetensors" in line
    assert "no policy version 7" in serve_refusal(
        "--registry", str(published.root), "--version", "7", "--port", str(free_port())
    )


def test_serve_checkpoint_folder_with_a_manifest_is_verified(published, tmp_path):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(published.path(1), folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_experts_per_tok": 1}))
    line = serve_refusal("--checkpoint", str(folder), "--port", str(free_port()))
    assert line.startswith(f"error: checkpoint {folder} fails its checksums") and "config.json" in line


def metric(url, name):
    """A sample's value from the server's Prometheus exposition (0 when absent)."""
    with urllib.request.urlopen(url + "/metrics", timeout=30) as reply:
        lines = reply.read().decode().splitlines()
    return sum(float(line.split()[-1]) for line in lines if line.startswith(name + " "))


def test_serve_with_a_drafter_samples_speculatively_and_exactly(published, local_policy):
    from verifarm.policy.model import build_drafter
    from verifarm.policy.server import _load_policy

    published.publish_drafter(1, build_drafter(local_policy.model), {"acceptance_rate": 0.5})
    speculative = _load_policy(None, published.root, None, "cpu", drafter="auto", draft_tokens=3)
    with running(CompletionService(speculative, "tiny-moe")) as server:
        remote = HttpPolicy(server.url, "tiny-moe")
        greedy = remote.sample(PROMPTS, n=2, temperature=0, max_new_tokens=12)
        proposed = metric(server.url, 'verifarm_server_draft_tokens_total{outcome="proposed"}')
        accepted = metric(server.url, 'verifarm_server_draft_tokens_total{outcome="accepted"}')
    # Drafted (the server counts the drafts), and token for token the policy's own greedy output.
    assert proposed > 0 and 0 < accepted <= proposed
    plain = LocalPolicy(local_policy.model, local_policy.tokenizer, version=1)
    assert tokens_of(greedy) == tokens_of(plain.sample(PROMPTS, n=2, temperature=0, max_new_tokens=12))
    # With --drafter none (the default) the same registry is served plainly: no drafts, the same tokens.
    with running(CompletionService(_load_policy(None, published.root, 1, "cpu"), "tiny-moe")) as server:
        again = HttpPolicy(server.url, "tiny-moe").sample(PROMPTS, n=2, temperature=0, max_new_tokens=12)
        assert metric(server.url, 'verifarm_server_draft_tokens_total{outcome="proposed"}') == 0
    assert tokens_of(again) == tokens_of(greedy)


def tokens_of(rows):
    return [[(c.text, c.token_ids, c.policy_version) for c in row] for row in rows]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--drafter", "sometimes"], "error: --drafter takes auto or none, got 'sometimes'"),
        (["--drafter", "auto", "--draft-tokens", "0"], "error: --draft-tokens must be in [1, 16], got 0"),
    ],
)
def test_serve_refuses_bad_speculative_options_in_one_line(published, args, message):
    assert serve_refusal("--registry", str(published.root), "--port", str(free_port()), *args) == message


def test_serve_refuses_a_drafter_for_a_checkpoint_folder(published):
    line = serve_refusal("--checkpoint", str(published.path(1)), "--drafter", "auto", "--port", str(free_port()))
    assert line.startswith("error: --drafter auto needs a checkpoint registry")
