"""Every env id in one table, mapped to its task family, so the farm can generate and verify without Gymnasium.

``import verifarm.envs`` registers each id with Gymnasium as ``verifarm.envs.gym_env:TaskEnv`` with ``env_id`` in its
kwargs. Families are built on first use (HumanEval and reasoning-gym load data sets when built).
"""

from __future__ import annotations

import json
from typing import Any

import gymnasium

from verifarm.envs.arithmetic import ArithmeticFamily
from verifarm.envs.base import EnvEntry, TaskFamily
from verifarm.envs.human_eval import HumanEvalFamily
from verifarm.envs.math_answer import MathAnswerFamily
from verifarm.envs.program_envs import PROGRAM_ENVS
from verifarm.envs.python_function import PythonFunctionFamily
from verifarm.envs.reasoning_gym_adapter import ReasoningGymFamily
from verifarm.envs.translation import TranslationFamily
from verifarm.sandbox.languages import LANGUAGE_NAMES

ENV_IDS: dict[str, EnvEntry] = {
    "verifarm/Arithmetic-v0": EnvEntry(ArithmeticFamily, options=("operations", "instruct")),
    "verifarm/Addition-v0": EnvEntry(
        ArithmeticFamily, {"operations": ("+",), "name": "addition"}, options=("instruct",)
    ),
    "verifarm/MathAnswer-v0": EnvEntry(MathAnswerFamily),
    "verifarm/PythonFunction-v0": EnvEntry(PythonFunctionFamily, languages=("python",)),
    "verifarm/HumanEval-v0": EnvEntry(HumanEvalFamily, languages=("python",)),
    **PROGRAM_ENVS,
    "verifarm/Translate-v0": EnvEntry(TranslationFamily, languages=LANGUAGE_NAMES),
    "verifarm/ReasoningGym-v0": EnvEntry(ReasoningGymFamily),
}


def _entry(env_id: str) -> EnvEntry:
    try:
        return ENV_IDS[env_id]
    except KeyError:
        raise ValueError(f"unknown env id {env_id!r}; known: {sorted(ENV_IDS)}") from None


def accepted_languages(env_id: str) -> tuple[str, ...]:
    """The programming languages a completion for env_id may be written in (the `language` option picks one for
    the Program envs); empty for envs whose answers are not programs."""
    return _entry(env_id).languages


def get_family(env_id: str, **options: Any) -> TaskFamily:
    """The task family behind ``env_id``, built with the same keyword options ``gymnasium.make`` takes."""
    return _entry(env_id).build(env_id, **options)


class FamilyCache:
    """Task families built once per worker process (some load data sets when built). Families whose answers are
    programs run them on `sandbox_backend` (a backend name or 'auto'), unless their options name another."""

    def __init__(self, sandbox_backend: str = "auto") -> None:
        self.sandbox_backend = sandbox_backend
        self._families: dict[str, TaskFamily] = {}

    def get(self, env_id: str, options: dict[str, Any]) -> TaskFamily:
        key = json.dumps([env_id, options], sort_keys=True, default=str)
        if key not in self._families:
            if accepted_languages(env_id):
                options = {"backend": self.sandbox_backend, **options}
            self._families[key] = get_family(env_id, **options)
        return self._families[key]

    def close(self) -> None:
        """Stops the families' child processes (checkers, scorers); a later ``get`` builds afresh."""
        for family in self._families.values():
            close = getattr(family, "close", None)
            if close is not None:
                close()
        self._families.clear()


def register_all() -> None:
    """Register every id with Gymnasium (idempotent)."""
    for env_id in ENV_IDS:
        if env_id not in gymnasium.registry:
            gymnasium.register(
                id=env_id,
                entry_point="verifarm.envs.gym_env:TaskEnv",
                kwargs={"env_id": env_id},
                disable_env_checker=False,
            )
