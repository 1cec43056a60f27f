"""`verifarm serve`: our policy behind an OpenAI-compatible `/v1/completions` endpoint (stdlib HTTP).

Routes: `POST /v1/completions`, `GET /v1/models`, `GET /health`. Beyond the OpenAI fields, each
choice carries `token_ids` and the response carries `policy_version`, which `HttpPolicy` reads.
Served from a checkpoint registry without a pinned version, the server follows the newest good
version, reloading between requests.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Annotated, Any, Callable

import typer

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 << 20
MAX_ROWS_PER_REQUEST = 4096  # prompts x n: bounds the memory one request can claim
MAX_TOKENS_PER_REQUEST = 8192
DEFAULT_MAX_CACHE_BYTES = 4 << 30  # KV cache one request may allocate


def kv_cache_bytes(config: Any, rows: int, slots: int, bytes_per_value: int) -> int:
    """Bytes of the preallocated key/value cache for `rows` sequences of `slots` positions."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return 2 * config.num_hidden_layers * rows * kv_heads * slots * head_dim * bytes_per_value


@dataclass(frozen=True)
class CompletionRequest:
    """A validated `/v1/completions` body."""

    prompts: list[str]
    n: int
    temperature: float
    top_p: float
    max_tokens: int
    stop: list[str]
    logprobs: int | None
    seed: int | None
    echo_token_ids: bool

    @classmethod
    def parse(cls, body: dict[str, Any], model_name: str) -> "CompletionRequest":
        if not isinstance(body, dict):
            raise ValueError("the request body must be a JSON object")
        if body.get("model", model_name) != model_name:
            raise LookupError(f"model {body.get('model')!r} is not served here; this server serves {model_name!r}")
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompt must be a string or a non-empty list of strings (token-id prompts unsupported)")
        stop = body.get("stop") or []
        stop = [stop] if isinstance(stop, str) else stop
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise ValueError("stop must be a string or a list of strings")
        n, max_tokens = _integer(body, "n", 1), _integer(body, "max_tokens", 16)
        if n * len(prompts) > MAX_ROWS_PER_REQUEST:
            raise ValueError(f"prompts x n = {n * len(prompts)} exceeds {MAX_ROWS_PER_REQUEST} per request")
        if max_tokens > MAX_TOKENS_PER_REQUEST:
            raise ValueError(f"max_tokens {max_tokens} exceeds {MAX_TOKENS_PER_REQUEST}")
        logprobs = body.get("logprobs")
        if logprobs is not None and (isinstance(logprobs, bool) or not isinstance(logprobs, int) or logprobs < 0):
            raise ValueError("logprobs must be null or a non-negative integer")
        seed = body.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError("seed must be null or an integer")
        return cls(prompts, n, _number(body, "temperature", 1.0), _number(body, "top_p", 1.0), max_tokens, stop,
                   logprobs, seed, bool(body.get("return_token_ids", True)))


def _integer(body: dict[str, Any], key: str, default: int) -> int:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key} must be an integer, got {value!r}")
    return value


def _number(body: dict[str, Any], key: str, default: float) -> float:
    value = body.get(key, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{key} must be a number, got {value!r}")
    return float(value)


class CompletionService:
    """Turns validated requests into OpenAI-style responses; one `sample` call at a time."""

    def __init__(self, current_policy: Callable[[], Any], model_name: str,
                 max_cache_bytes: int = DEFAULT_MAX_CACHE_BYTES):
        self.current_policy = current_policy  # returns the LocalPolicy to use for the next request
        self.model_name = model_name
        self.max_cache_bytes = max_cache_bytes
        # The model uses every core for one batch; concurrent batches would only thrash each other.
        self._lock = threading.Lock()

    def complete(self, request: CompletionRequest) -> dict[str, Any]:
        with self._lock:
            policy = self.current_policy()
            prompt_tokens = [len(policy.tokenizer(p)["input_ids"]) for p in request.prompts]
            model = policy.model
            needed = kv_cache_bytes(model.config, len(request.prompts) * request.n,
                                    max(prompt_tokens) + request.max_tokens, model.dtype.itemsize)
            if needed > self.max_cache_bytes:
                raise ValueError(f"this request needs a {needed / 2**30:.1f} GiB KV cache, over the server's "
                                 f"{self.max_cache_bytes / 2**30:.1f} GiB; ask for fewer prompts x n or max_tokens")
            results = policy.sample(request.prompts, n=request.n, temperature=request.temperature,
                                    top_p=request.top_p, max_new_tokens=request.max_tokens,
                                    stop=request.stop or None, seed=request.seed)
            tokenizer = policy.tokenizer
        choices, completion_tokens = [], 0
        for prompt_index, samples in enumerate(results):
            for sample_index, completion in enumerate(samples):
                choice: dict[str, Any] = {
                    "index": prompt_index * request.n + sample_index,
                    "text": completion.text,
                    "finish_reason": completion.finish_reason,
                    "logprobs": None,
                }
                if request.logprobs is not None:
                    tokens = [tokenizer.decode([token]) for token in completion.token_ids]
                    offsets, offset = [], 0
                    for token in tokens:
                        offsets.append(offset)
                        offset += len(token)
                    choice["logprobs"] = {"tokens": tokens, "token_logprobs": completion.logprobs,
                                          "top_logprobs": None, "text_offset": offsets}
                if request.echo_token_ids:
                    choice["token_ids"] = completion.token_ids
                choices.append(choice)
                completion_tokens += len(completion.token_ids)
        prompt_tokens = sum(prompt_tokens)
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": self.model_name,
            "system_fingerprint": f"verifarm-policy-v{policy.version}",
            "policy_version": policy.version,
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }


class _Handler(BaseHTTPRequestHandler):
    service: CompletionService  # set on the subclass that `build_server` makes
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.info("%s %s", self.address_string(), format % args)

    def _reply(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: HTTPStatus, message: str, kind: str) -> None:
        self._reply(status, {"error": {"message": message, "type": kind, "code": status.value}})

    def do_GET(self) -> None:
        if self.path == "/health":
            self._reply(HTTPStatus.OK, {"status": "ok"})
        elif self.path == "/v1/models":
            self._reply(HTTPStatus.OK, {"object": "list", "data": [
                {"id": self.service.model_name, "object": "model", "owned_by": "verifarm"}]})
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no route {self.path}", "not_found_error")

    def do_POST(self) -> None:
        if self.path != "/v1/completions":
            self._error(HTTPStatus.NOT_FOUND, f"no route {self.path}", "not_found_error")
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 < length <= MAX_BODY_BYTES:
            self.close_connection = True
            self._error(HTTPStatus.BAD_REQUEST, f"need a JSON body of 1..{MAX_BODY_BYTES} bytes with Content-Length",
                        "invalid_request_error")
            return
        try:
            body = json.loads(self.rfile.read(length))
            request = CompletionRequest.parse(body, self.service.model_name)
            payload = self.service.complete(request)
        except LookupError as error:
            self._error(HTTPStatus.NOT_FOUND, str(error), "not_found_error")
        except (ValueError, json.JSONDecodeError) as error:
            self._error(HTTPStatus.BAD_REQUEST, str(error), "invalid_request_error")
        except Exception as error:  # a failed request must not take the server down
            logger.exception("completion failed")
            self._error(HTTPStatus.INTERNAL_SERVER_ERROR, f"{type(error).__name__}: {error}", "server_error")
        else:
            self._reply(HTTPStatus.OK, payload)


def build_server(service: CompletionService, host: str = "127.0.0.1", port: int = 8000) -> ThreadingHTTPServer:
    """An HTTP server bound to host:port (port 0 picks a free one; read it from `server.server_address`)."""
    handler = type("CompletionHandler", (_Handler,), {"service": service})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


class RegistryFollower:
    """The newest good version of a checkpoint registry, reloaded when a newer one is published."""

    def __init__(self, registry_root: Path, device: str = "cpu"):
        from verifarm.policy.registry import CheckpointRegistry

        self.registry = CheckpointRegistry(registry_root)
        self.device = device
        self.policy = self._load(None)

    def _load(self, version: int | None):
        from verifarm.policy.sampling import LocalPolicy

        loaded = self.registry.load(version, device=self.device)
        logger.info("serving policy v%d from %s", loaded.version, loaded.path)
        return LocalPolicy(loaded.model, loaded.tokenizer, loaded.version)

    def __call__(self):
        newer = self.registry.newer_than(self.policy.version)
        if newer is not None:
            self.policy = self._load(newer)
        return self.policy


def serve(
    checkpoint: Annotated[Path | None, typer.Option(help="a Hugging Face checkpoint folder to serve")] = None,
    registry: Annotated[Path | None, typer.Option(
        help="a checkpoint registry root (default: the settings' checkpoint dir) when no --checkpoint")] = None,
    version: Annotated[int | None, typer.Option(
        help="registry version to pin (default: follow the newest good one); with --checkpoint, its label")] = None,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8000,
    model_name: Annotated[str, typer.Option(help="the model id clients send")] = "verifarm-policy",
    device: Annotated[str, typer.Option(help="torch device, e.g. cpu or cuda")] = "cpu",
    max_cache_gib: Annotated[float, typer.Option(help="refuse requests whose KV cache exceeds this")] = 4.0,
) -> None:
    """Serve a policy through an OpenAI-compatible /v1/completions endpoint until interrupted."""
    from verifarm.policy.sampling import LocalPolicy

    if checkpoint is not None and registry is not None:
        raise typer.BadParameter("give --checkpoint or --registry, not both")
    if checkpoint is not None:
        fixed = LocalPolicy.from_dir(checkpoint, version=version or 0, device=device)
        current_policy: Callable[[], Any] = lambda: fixed  # noqa: E731
    else:
        if registry is None:
            from verifarm.settings import load_settings

            registry = load_settings().checkpoints
        if version is None:
            current_policy = RegistryFollower(registry, device)
        else:
            from verifarm.policy.registry import CheckpointRegistry

            loaded = CheckpointRegistry(registry).load(version, device=device)
            pinned = LocalPolicy(loaded.model, loaded.tokenizer, loaded.version)
            current_policy = lambda: pinned  # noqa: E731
    if max_cache_gib <= 0:
        raise typer.BadParameter("--max-cache-gib must be positive")
    service = CompletionService(current_policy, model_name, max_cache_bytes=int(max_cache_gib * 2**30))
    server = build_server(service, host, port)
    bound_host, bound_port = server.server_address[:2]
    typer.echo(f"serving {model_name} on http://{bound_host}:{bound_port}/v1/completions")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
