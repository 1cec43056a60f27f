"""A policy behind any OpenAI-compatible `/v1/completions` endpoint, with `LocalPolicy`'s `sample`.

Token ids come from the choice's `token_ids` (our server and vLLM with `return_token_ids`) or from
`token_id:N` token strings (vLLM's `return_tokens_as_token_ids`); endpoints that give neither yield
empty `token_ids`. The policy version is the response's `policy_version` when the server reports one.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from verifarm.policy.params import SamplingParams
from verifarm.policy.sampling import Completion, SamplesByKeyword
from verifarm.redaction import redact_url


class HttpPolicyError(RuntimeError):
    """The endpoint failed or answered something that is not a completions response."""


def _token_ids(choice: dict[str, Any]) -> list[int]:
    if isinstance(choice.get("token_ids"), list):
        return [int(token) for token in choice["token_ids"]]
    tokens = (choice.get("logprobs") or {}).get("tokens") or []
    if tokens and all(isinstance(t, str) and t.startswith("token_id:") for t in tokens):
        return [int(t.removeprefix("token_id:")) for t in tokens]
    return []


class HttpPolicy(SamplesByKeyword):
    """Samples from `model_name` at `base_url` (e.g. "http://127.0.0.1:8000" or ".../v1")."""

    def __init__(
        self, base_url: str, model_name: str, version: int = 0, timeout_s: float = 600.0, api_key: str | None = None
    ):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, got {redact_url(base_url)}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        root = base_url.rstrip("/")
        self.completions_url = root + ("/completions" if root.endswith("/v1") else "/v1/completions")
        self.model_name = model_name
        self.version = version  # updated from the server's policy_version when it reports one
        self.timeout_s = timeout_s
        self.api_key = api_key

    def sample_with(
        self, prompts: list[str], params: SamplingParams, n: int = 1, seed: int | None = None
    ) -> list[list[Completion]]:
        """`sample` with its settings already validated (a campaign's)."""
        if isinstance(prompts, str) or not prompts or not all(isinstance(p, str) for p in prompts):
            raise ValueError("prompts must be a non-empty list of strings")
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        body: dict[str, Any] = {
            "model": self.model_name,
            "prompt": prompts,
            "n": n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
            "logprobs": 1,
            "return_token_ids": True,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if seed is not None:
            body["seed"] = seed
        response = self._post(body)
        version = response.get("policy_version", self.version)
        self.version = int(version) if version is not None else self.version
        choices = response.get("choices")
        if not isinstance(choices, list) or len(choices) != len(prompts) * n:
            raise HttpPolicyError(
                f"expected {len(prompts) * n} choices from {self.completions_url}, "
                f"got {len(choices) if isinstance(choices, list) else choices!r}"
            )
        completions = []
        for choice in sorted(choices, key=lambda c: c.get("index", 0)):
            logprobs = (choice.get("logprobs") or {}).get("token_logprobs") or []
            completions.append(
                Completion(
                    text=choice.get("text", ""),
                    token_ids=_token_ids(choice),
                    logprobs=[float(lp) if lp is not None else 0.0 for lp in logprobs],
                    policy_version=self.version,
                    finish_reason=choice.get("finish_reason") or "length",
                )
            )
        return [completions[i * n : (i + 1) * n] for i in range(len(prompts))]

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            self.completions_url, data=json.dumps(body).encode("utf-8"), headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as reply:
                return json.loads(reply.read())
        except urllib.error.HTTPError as error:
            detail = error.read().decode("utf-8", "replace")
            try:
                detail = json.loads(detail)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                pass
            if error.code == 400:
                raise ValueError(f"{self.completions_url} refused the request: {detail}") from None
            raise HttpPolicyError(f"{self.completions_url} answered HTTP {error.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, json.JSONDecodeError) as error:
            raise HttpPolicyError(f"{self.completions_url} failed: {error}") from None
