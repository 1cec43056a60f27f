"""`verifarm serve`: our policy behind an OpenAI-compatible API (FastAPI on uvicorn).

Routes: `POST /v1/completions`, `POST /v1/chat/completions` (messages through the tokenizer's chat template,
or `DEFAULT_CHAT_TEMPLATE` when it has none), `GET /v1/models`, `GET /health`, `GET /metrics` (Prometheus).
Errors, request validation included, come in OpenAI's shape: `{"error": {"message", "type", "param", "code"}}`.
`stream: true` answers with server-sent events; the policy samples a whole batch at once, so each choice
arrives as one event once sampled. Beyond the OpenAI fields, each completion choice carries `token_ids` and the
response carries `policy_version`, which `HttpPolicy` reads. Served from a checkpoint registry without a pinned
version, the server follows the newest good version, reloading between requests.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import typer
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from verifarm.policy.asgi import PortUnavailable, bind_socket, serve_forever
from verifarm.policy.metrics import ServerMetrics
from verifarm.policy.params import SamplingParams
from verifarm.policy.registry import MANIFEST_NAME, CheckpointRegistry, CorruptCheckpoint, NoCheckpoint
from verifarm.settings import load_settings

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 4 << 20
MAX_ROWS_PER_REQUEST = 4096  # prompts x n: bounds the memory one request can claim
MAX_TOKENS_PER_REQUEST = 8192
DEFAULT_MAX_CACHE_BYTES = 4 << 30  # KV cache one request may allocate
SPECULATIVE_DRAFTERS = ("auto", "none")  # as a campaign's `speculative.drafter`
MAX_DRAFT_TOKENS = 16

# For tokenizers that carry no chat template (ours): each message on its own "role: content" line, then the
# assistant's turn. A checkpoint with its own `chat_template` is served with that one instead.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant: {% endif %}"
)
CHAT_ROLES = ("system", "user", "assistant")


def kv_cache_bytes(config: Any, rows: int, slots: int, bytes_per_value: int) -> int:
    """Bytes of the preallocated key/value cache for `rows` sequences of `slots` positions."""
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
    return 2 * config.num_hidden_layers * rows * kv_heads * slots * head_dim * bytes_per_value


class OpenAIError(Exception):
    """A request the server answers with an error in OpenAI's shape."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param = status, message, kind, param

    def payload(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.status}}


@dataclass(frozen=True)
class CompletionRequest:
    """A validated `/v1/completions` body (or the sampling part of a chat body, with its prompt filled in)."""

    prompts: list[str]
    n: int
    sampling: SamplingParams
    logprobs: int | None
    seed: int | None
    echo_token_ids: bool
    stream: bool = False

    @classmethod
    def parse(cls, body: dict[str, Any], model_name: str) -> CompletionRequest:
        _check_model(body, model_name)
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompt must be a string or a non-empty list of strings (token-id prompts unsupported)")
        logprobs = body.get("logprobs")
        if logprobs is not None and (isinstance(logprobs, bool) or not isinstance(logprobs, int) or logprobs < 0):
            raise ValueError("logprobs must be null or a non-negative integer")
        return cls(
            prompts,
            logprobs=logprobs,
            echo_token_ids=bool(body.get("return_token_ids", True)),
            **_sampling_fields(body, len(prompts)),
        )


@dataclass(frozen=True)
class ChatRequest:
    """A validated `/v1/chat/completions` body: the conversation and how to sample the assistant's turn."""

    messages: list[dict[str, str]]
    sampling: CompletionRequest  # prompts are filled in once the chat template is applied

    @classmethod
    def parse(cls, body: dict[str, Any], model_name: str) -> ChatRequest:
        _check_model(body, model_name)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ValueError("messages must be a non-empty list of {role, content} objects")
        clean = []
        for index, message in enumerate(messages):
            if (
                not isinstance(message, dict)
                or message.get("role") not in CHAT_ROLES
                or not isinstance(message.get("content"), str)
            ):
                raise ValueError(f"messages[{index}] must be an object with role in {CHAT_ROLES} and string content")
            clean.append({"role": message["role"], "content": message["content"]})
        sampling = CompletionRequest([], logprobs=None, echo_token_ids=False, **_sampling_fields(body, 1))
        return cls(clean, sampling)


def _check_model(body: Any, model_name: str) -> None:
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    if body.get("model", model_name) != model_name:
        raise LookupError(f"model {body.get('model')!r} is not served here; this server serves {model_name!r}")


def _sampling_fields(body: dict[str, Any], prompts: int) -> dict[str, Any]:
    stop = body.get("stop") or []
    stop = [stop] if isinstance(stop, str) else stop
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
        raise ValueError("stop must be a string or a list of strings")
    n, max_tokens = _integer(body, "n", 1), _integer(body, "max_tokens", 16)
    if n * prompts > MAX_ROWS_PER_REQUEST:
        raise ValueError(f"prompts x n = {n * prompts} exceeds {MAX_ROWS_PER_REQUEST} per request")
    if max_tokens > MAX_TOKENS_PER_REQUEST:
        raise ValueError(f"max_tokens {max_tokens} exceeds {MAX_TOKENS_PER_REQUEST}")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ValueError("seed must be null or an integer")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ValueError("stream must be true or false")
    sampling = SamplingParams.checked(
        temperature=_number(body, "temperature", 1.0),
        top_p=_number(body, "top_p", 1.0),
        max_new_tokens=max_tokens,
        stop=tuple(stop),
    )
    return {"n": n, "sampling": sampling, "seed": seed, "stream": stream}


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


def chat_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The conversation as one prompt ending where the assistant's turn begins."""
    template = getattr(tokenizer, "chat_template", None) or DEFAULT_CHAT_TEMPLATE
    return tokenizer.apply_chat_template(messages, chat_template=template, tokenize=False, add_generation_prompt=True)


class CompletionService:
    """Turns validated requests into OpenAI-style responses; one `sample` call at a time."""

    def __init__(
        self, current_policy: Callable[[], Any], model_name: str, max_cache_bytes: int = DEFAULT_MAX_CACHE_BYTES
    ):
        self.current_policy = current_policy  # returns the LocalPolicy to use for the next request
        self.model_name = model_name
        self.max_cache_bytes = max_cache_bytes
        self.metrics = ServerMetrics()
        # The model uses every core for one batch; concurrent batches would only thrash each other.
        self._lock = threading.Lock()

    def _sample(self, request: CompletionRequest, messages: list[dict[str, str]] | None = None):
        with self._lock:
            policy = self.current_policy()
            if messages is not None:
                request = replace(request, prompts=[chat_prompt(policy.tokenizer, messages)])
            prompt_tokens = [len(policy.tokenizer(p)["input_ids"]) for p in request.prompts]
            model = policy.model
            needed = kv_cache_bytes(
                model.config,
                len(request.prompts) * request.n,
                max(prompt_tokens) + request.sampling.max_new_tokens,
                model.dtype.itemsize,
            )
            if needed > self.max_cache_bytes:
                raise ValueError(
                    f"this request needs a {needed / 2**30:.1f} GiB KV cache, over the server's "
                    f"{self.max_cache_bytes / 2**30:.1f} GiB; ask for fewer prompts x n or max_tokens"
                )
            started = time.perf_counter()
            results = policy.sample_with(request.prompts, request.sampling, request.n, request.seed)
        completions = [c for samples in results for c in samples]
        sampled = sum(len(c.token_ids) for c in completions)
        self.metrics.observe_sampling(time.perf_counter() - started, sampled, policy.version)
        self.metrics.observe_drafts(
            sum(c.draft_proposed for c in completions), sum(c.draft_accepted for c in completions)
        )
        return policy, request, results, sum(prompt_tokens), sampled

    def _envelope(self, kind: str, policy: Any, prompt_tokens: int, completion_tokens: int) -> dict[str, Any]:
        return {
            "id": f"{'chatcmpl' if kind.startswith('chat') else 'cmpl'}-{uuid.uuid4().hex}",
            "object": kind,
            "created": int(time.time()),
            "model": self.model_name,
            "system_fingerprint": f"verifarm-policy-v{policy.version}",
            "policy_version": policy.version,
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    def complete(self, request: CompletionRequest) -> dict[str, Any]:
        policy, request, results, prompt_tokens, completion_tokens = self._sample(request)
        tokenizer = policy.tokenizer
        choices = []
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
                    choice["logprobs"] = {
                        "tokens": tokens,
                        "token_logprobs": completion.logprobs,
                        "top_logprobs": None,
                        "text_offset": offsets,
                    }
                if request.echo_token_ids:
                    choice["token_ids"] = completion.token_ids
                choices.append(choice)
        return {**self._envelope("text_completion", policy, prompt_tokens, completion_tokens), "choices": choices}

    def chat(self, request: ChatRequest) -> dict[str, Any]:
        policy, _, results, prompt_tokens, completion_tokens = self._sample(request.sampling, request.messages)
        choices = [
            {
                "index": index,
                "message": {"role": "assistant", "content": completion.text},
                "finish_reason": completion.finish_reason,
                "logprobs": None,
            }
            for index, completion in enumerate(results[0])
        ]
        return {**self._envelope("chat.completion", policy, prompt_tokens, completion_tokens), "choices": choices}


def stream_events(payload: dict[str, Any]) -> Iterator[str]:
    """A finished response as OpenAI's server-sent events: one chunk per choice, then `[DONE]`."""
    chat = payload["object"] == "chat.completion"
    head = {k: payload[k] for k in ("id", "created", "model", "system_fingerprint", "policy_version")}
    head["object"] = "chat.completion.chunk" if chat else "text_completion"
    for choice in payload["choices"]:
        if chat:
            deltas = [
                ({"role": "assistant"}, None),
                ({"content": choice["message"]["content"]}, None),
                ({}, choice["finish_reason"]),
            ]
            for delta, finish in deltas:
                chunk = {**head, "choices": [{"index": choice["index"], "delta": delta, "finish_reason": finish}]}
                yield f"data: {json.dumps(chunk)}\n\n"
        else:
            yield f"data: {json.dumps({**head, 'choices': [choice]})}\n\n"
    yield "data: [DONE]\n\n"


_ERROR_KINDS = {
    400: "invalid_request_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
}


def build_app(service: CompletionService):
    """The FastAPI app serving `service` (run it with `verifarm.policy.asgi`)."""
    app = FastAPI(title="verifarm policy server", docs_url=None, redoc_url=None, openapi_url=None)

    def error_response(error: OpenAIError) -> JSONResponse:
        return JSONResponse(error.payload(), status_code=error.status)

    @app.exception_handler(OpenAIError)
    async def _openai_error(_request: Request, error: OpenAIError) -> JSONResponse:
        return error_response(error)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
        message = (
            f"no route {request.method} {request.url.path}" if error.status_code in (404, 405) else str(error.detail)
        )
        return error_response(
            OpenAIError(error.status_code, message, _ERROR_KINDS.get(error.status_code, "server_error"))
        )

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, error: RequestValidationError) -> JSONResponse:
        first = error.errors()[0] if error.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(part) for part in first["loc"][1:]) or None
        return error_response(OpenAIError(400, f"{param or 'body'}: {first['msg']}", param=param))

    async def read_json(request: Request) -> Any:
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
            raise OpenAIError(413, f"the body must be at most {MAX_BODY_BYTES} bytes")
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_BODY_BYTES:
                raise OpenAIError(413, f"the body must be at most {MAX_BODY_BYTES} bytes")
        if not body:
            raise OpenAIError(400, "need a JSON body")
        try:
            return json.loads(body)
        except ValueError as error:
            raise OpenAIError(400, f"the body is not JSON: {error}") from None

    async def answer(route: str, request: Request, parse: Callable, run: Callable) -> Response:
        try:
            parsed = parse(await read_json(request), service.model_name)
            payload = await run_in_threadpool(run, parsed)
        except OpenAIError as error:
            service.metrics.requests.labels(route, str(error.status)).inc()
            raise
        except LookupError as error:
            service.metrics.requests.labels(route, "404").inc()
            raise OpenAIError(404, str(error), "not_found_error", "model") from None
        except ValueError as error:
            service.metrics.requests.labels(route, "400").inc()
            raise OpenAIError(400, str(error)) from None
        except Exception as error:  # a failed request must not take the server down
            logger.exception("completion failed")
            service.metrics.requests.labels(route, "500").inc()
            raise OpenAIError(500, f"{type(error).__name__}: {error}", "server_error") from None
        service.metrics.requests.labels(route, "200").inc()
        stream = parsed.sampling.stream if isinstance(parsed, ChatRequest) else parsed.stream
        if stream:
            return StreamingResponse(stream_events(payload), media_type="text/event-stream")
        return JSONResponse(payload)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": service.model_name, "object": "model", "owned_by": "verifarm"}]}

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/completions")
    async def completions(request: Request) -> Response:
        return await answer("completions", request, CompletionRequest.parse, service.complete)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request) -> Response:
        return await answer("chat", request, ChatRequest.parse, service.chat)

    return app


class RegistryFollower:
    """The newest good version of a checkpoint registry, reloaded when a newer one is published."""

    def __init__(self, registry_root: Path, device: str = "cpu"):
        self.registry = CheckpointRegistry(registry_root)
        self.device = device
        self.policy = self._load(None)

    def _load(self, version: int | None):
        # deferred: torch and transformers load when a policy is served, not with the CLI
        from verifarm.policy.sampling import LocalPolicy

        loaded = self.registry.load(version, device=self.device)
        logger.info("serving policy v%d from %s", loaded.version, loaded.path)
        return LocalPolicy(loaded.model, loaded.tokenizer, loaded.version)

    def __call__(self):
        newer = self.registry.newer_than(self.policy.version)
        if newer is not None:
            self.policy = self._load(newer)
        return self.policy


def verify_checkpoint_folder(path: Path) -> str | None:
    """Check a checkpoint folder against the registry manifest it carries.

    Returns None when every file matches, a one-line warning when the folder carries no manifest (a plain
    Hugging Face folder: served unverified); raises ValueError when files do not match their checksums.
    """
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a Hugging Face checkpoint folder (no config.json)")
    if not (path / MANIFEST_NAME).is_file():
        return f"{path} carries no registry {MANIFEST_NAME}: serving it unverified"
    info = CheckpointRegistry.verify_folder(0, path)  # the registry's own check, on a folder outside it
    if not info.ok:
        raise ValueError(f"checkpoint {path} fails its checksums and was refused: {'; '.join(info.problems)}")
    return None


def _load_policy(
    checkpoint: Path | None,
    registry: Path | None,
    version: int | None,
    device: str,
    drafter: str = "none",
    draft_tokens: int = 16,
) -> Callable[[], Any]:
    """What `serve` serves; every refusal is a ValueError (or the registry's errors) with a one-line message.

    With `drafter="auto"` each request samples speculatively, `draft_tokens` drafts a round, with the drafter
    the registry publishes beside the served version (plainly while there is none): the same output, faster.
    """
    # deferred: torch and transformers load when a policy is served, not with the CLI
    from verifarm.policy.sampling import LocalPolicy

    if drafter not in SPECULATIVE_DRAFTERS:
        raise ValueError(f"--drafter takes {' or '.join(SPECULATIVE_DRAFTERS)}, got {drafter!r}")
    if not 1 <= draft_tokens <= MAX_DRAFT_TOKENS:
        raise ValueError(f"--draft-tokens must be in [1, {MAX_DRAFT_TOKENS}], got {draft_tokens}")
    if checkpoint is not None:
        if drafter == "auto":
            raise ValueError(
                "--drafter auto needs a checkpoint registry (drafters are published beside its versions); "
                "serve one with --registry, or drop --drafter"
            )
        warning = verify_checkpoint_folder(checkpoint)
        if warning:
            typer.secho(f"warning: {warning}", fg=typer.colors.YELLOW, err=True)
        fixed = LocalPolicy.from_dir(checkpoint, version=version or 0, device=device)
        return lambda: fixed
    if registry is None:
        registry = load_settings().checkpoints
    current = RegistryFollower(registry, device) if version is None else _pinned_version(registry, version, device)
    if drafter == "none":
        return current
    return SpeculativePolicy(current, registry, draft_tokens, device)


def _pinned_version(registry: Path, version: int, device: str) -> Callable[[], Any]:
    # deferred: torch and transformers load when a policy is served, not with the CLI
    from verifarm.policy.sampling import LocalPolicy

    store = CheckpointRegistry(registry)
    if version not in store.published_versions():
        raise ValueError(f"no policy version {version} in {registry} (published: {store.published_versions()})")
    loaded = store.load(version, device=device)
    pinned = LocalPolicy(loaded.model, loaded.tokenizer, loaded.version)
    return lambda: pinned


class SpeculativePolicy:
    """The served policy with the registry's drafter for its version attached before each request."""

    def __init__(self, current_policy: Callable[[], Any], registry_root: Path, draft_tokens: int, device: str):
        # deferred: the drafter module loads torch and transformers, which the CLI does not import
        from verifarm.policy.drafter import PublishedDrafter

        self.current_policy = current_policy
        self.drafters = PublishedDrafter(CheckpointRegistry(registry_root), device)
        self.draft_tokens = draft_tokens

    def __call__(self):
        policy = self.current_policy()
        self.drafters.attach(policy, True, self.draft_tokens)
        return policy


def serve(
    checkpoint: Annotated[Path | None, typer.Option(help="a Hugging Face checkpoint folder to serve")] = None,
    registry: Annotated[
        Path | None,
        typer.Option(help="a checkpoint registry root (default: the settings' checkpoint dir) when no --checkpoint"),
    ] = None,
    version: Annotated[
        int | None,
        typer.Option(
            help="registry version to pin (default: follow the newest good one); with --checkpoint, its label"
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="address to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to bind")] = 8000,
    model_name: Annotated[str, typer.Option(help="the model id clients send")] = "verifarm-policy",
    device: Annotated[str, typer.Option(help="torch device, e.g. cpu or cuda")] = "cpu",
    max_cache_gib: Annotated[float, typer.Option(help="refuse requests whose KV cache exceeds this")] = 4.0,
    drafter: Annotated[
        str,
        typer.Option(
            help="speculative sampling: auto drafts with the drafter the registry publishes beside the served "
            "version (exact output, faster), none samples plainly"
        ),
    ] = "none",
    draft_tokens: Annotated[int, typer.Option(help="the most draft tokens a round of speculative sampling (k)")] = 16,
) -> None:
    """Serve a policy through an OpenAI-compatible API (/v1/completions, /v1/chat/completions) until interrupted."""

    def fail(message: str) -> None:
        typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2)

    if checkpoint is not None and registry is not None:
        fail("give --checkpoint or --registry, not both")
    if max_cache_gib <= 0:
        fail("--max-cache-gib must be positive")
    try:  # before the model loads: a busy port is known in a second, not after minutes of loading
        sock = bind_socket(host, port)
    except (PortUnavailable, ValueError) as error:
        fail(str(error))
    try:
        current_policy = _load_policy(checkpoint, registry, version, device, drafter, draft_tokens)
    except (ValueError, CorruptCheckpoint, NoCheckpoint) as error:
        sock.close()
        fail(str(error))
    service = CompletionService(current_policy, model_name, max_cache_bytes=int(max_cache_gib * 2**30))
    bound_host, bound_port = sock.getsockname()[:2]
    typer.echo(f"serving {model_name} on http://{bound_host}:{bound_port}/v1 (completions, chat/completions)")
    serve_forever(build_app(service), sock)
