"""The Gymnasium face of a task family: text in, text out, the verdict in ``info``.

``reset(seed=s)`` poses ``family.generate(s, difficulty)``, so a rollout record's task seed reproduces its task in
any process; ``reset()`` without a seed draws the next task seed from the env's seeded generator. Single-turn envs
terminate after one step; multi-turn envs (``max_turns > 1``) answer a failed attempt with the family's feedback
as the next observation and truncate at the turn limit.
"""

from __future__ import annotations

from typing import Any, cast

import gymnasium as gym
from gymnasium import spaces

from verifarm.envs.base import MultiTurnFamily, Task, Verdict, as_completion_text
from verifarm.envs.catalog import ENV_IDS, get_family

REPLACEMENT_CHAR = "\ufffd"


def _wide_charset() -> str:
    """Tab, newline, printable ASCII and the rest of the Basic Multilingual Plane except controls and surrogates.

    Code and puzzle prompts (HumanEval, reasoning-gym) use some non-ASCII text; anything outside this set is
    replaced by U+FFFD in observations.
    """
    chars = ["\t", "\n"] + [chr(c) for c in range(32, 127)]
    chars += [chr(c) for c in range(0xA0, 0xD800)] + [chr(c) for c in range(0xE000, 0xFFFE)]
    return "".join(chars)


TEXT_CHARSET = _wide_charset()
DEFAULT_MAX_PROMPT_CHARS = 8192
DEFAULT_MAX_COMPLETION_CHARS = 8192


class TaskEnv(gym.Env[str, str]):
    """A task family as a Gymnasium env; ``env_id`` names the family in ``verifarm.envs.catalog``."""

    metadata = {"render_modes": ["ansi"], "render_fps": 4}  # noqa: RUF012 -- gymnasium declares it a plain dict

    def __init__(
        self,
        env_id: str,
        difficulty: int | None = None,
        render_mode: str | None = None,
        max_turns: int | None = None,
        reveal_reference: bool = True,
        **family_options: Any,
    ) -> None:
        if env_id not in ENV_IDS:
            raise ValueError(f"unknown env id {env_id!r}; known: {sorted(ENV_IDS)}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.env_id = env_id
        self.family = get_family(env_id, **family_options)
        self.difficulty = self._checked_difficulty(self.family.min_difficulty if difficulty is None else difficulty)
        self.max_turns = int(max_turns if max_turns is not None else getattr(self.family, "max_turns", 1))
        if self.max_turns < 1:
            raise ValueError(f"max_turns must be at least 1, got {self.max_turns}")
        if self.max_turns > 1 and not hasattr(self.family, "feedback"):
            raise ValueError(f"{env_id} has no feedback for a multi-turn episode; use max_turns=1")
        self.render_mode = render_mode
        self.reveal_reference = reveal_reference
        self.charset = getattr(self.family, "charset", TEXT_CHARSET)
        max_prompt = getattr(self.family, "max_prompt_chars", DEFAULT_MAX_PROMPT_CHARS)
        max_completion = getattr(self.family, "max_completion_chars", DEFAULT_MAX_COMPLETION_CHARS)
        self.observation_space = spaces.Text(max_length=max_prompt, min_length=0, charset=self.charset)
        self.action_space = spaces.Text(max_length=max_completion, min_length=0, charset=self.charset)
        self._charset_set = frozenset(self.charset)
        self._max_observation_chars = max_prompt
        self.task: Task | None = None
        self.last_verdict: Verdict | None = None
        self.task_seed: int | None = None
        self.turn = 0
        self._done = True
        self._last_observation = ""

    def _checked_difficulty(self, difficulty: int) -> int:
        low, high = self.family.min_difficulty, self.family.max_difficulty
        if not isinstance(difficulty, int) or not low <= difficulty <= high:
            raise ValueError(f"difficulty for {self.env_id} must be an integer in [{low}, {high}], got {difficulty!r}")
        return difficulty

    def _fit(self, text: str) -> str:
        """Keep an observation inside the observation space (charset and length)."""
        if any(c not in self._charset_set for c in text):
            fallback = REPLACEMENT_CHAR if REPLACEMENT_CHAR in self._charset_set else "?"
            text = "".join(c if c in self._charset_set else fallback for c in text)
        return text[: self._max_observation_chars]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict[str, Any]]:
        super().reset(seed=seed)
        options = dict(options or {})
        difficulty = self._checked_difficulty(options.pop("difficulty", self.difficulty))
        task_seed = options.pop("task_seed", seed)
        if options:
            raise ValueError(f"unknown reset options {sorted(options)}; known: difficulty, task_seed")
        if task_seed is None:
            task_seed = int(self.np_random.integers(0, 2**31 - 1))
        self.task_seed = int(task_seed)
        self.task = self.family.generate(self.task_seed, difficulty)
        self.turn = 0
        self._done = False
        self._last_observation = self._fit(self.task.prompt)
        info = {
            "task_id": self.task.task_id,
            "task_seed": self.task_seed,
            "difficulty": difficulty,
            "verifier_version": self.family.verifier_version,
            "env_id": self.env_id,
        }
        return self._last_observation, info

    def step(self, action: str | bytes) -> tuple[str, float, bool, bool, dict[str, Any]]:
        if self.task is None or self._done:
            raise RuntimeError("call reset() before step(), and again after an episode ends")
        completion = as_completion_text(action)
        self.turn += 1
        verdict: Verdict = self.family.verify(self.task, completion)
        self.last_verdict = verdict  # the whole verdict, timings included (info stays deterministic)
        terminated = verdict.passed or self.max_turns == 1
        truncated = not terminated and self.turn >= self.max_turns
        self._done = terminated or truncated
        if self._done:
            observation = ""
        else:
            family = cast(MultiTurnFamily, self.family)  # max_turns > 1 only with feedback (see __init__)
            observation = self._fit(family.feedback(self.task, completion, verdict, self.turn, self.max_turns))
        self._last_observation = observation
        info: dict[str, Any] = {
            "task_id": self.task.task_id,
            "task_seed": self.task_seed,
            "difficulty": self.task.difficulty,
            "verifier_version": self.family.verifier_version,
            "env_id": self.env_id,
            "turn": self.turn,
            "reward": verdict.reward,
            "passed": verdict.passed,
            "reason": verdict.reason,
            "infra_error": verdict.infra_error,
            "details": dict(verdict.details),
        }
        if self.reveal_reference and self._done:
            info["reference"] = self.task.reference
        return observation, float(verdict.reward), terminated, truncated, info

    def close(self) -> None:
        """Stop what the family holds (MathAnswer's checker process)."""
        close = getattr(self.family, "close", None)
        if close is not None:
            close()
        super().close()

    def render(self) -> str | None:
        if self.render_mode == "ansi":
            return self._last_observation
        return None
