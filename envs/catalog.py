"""Every env id mapped to its task family, so the farm can generate and verify without Gymnasium.

Families are built lazily (HumanEval and reasoning-gym imports are heavy); ``import verifarm.envs`` registers each
id with Gymnasium as ``verifarm.envs.gym_env:TaskEnv`` with ``env_id`` in its kwargs.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from verifarm.envs.base import TaskFamily


def _arithmetic(operations: tuple[str, ...] | list[str] = ("+", "-", "*"), instruct: bool = False) -> TaskFamily:
    from verifarm.envs.arithmetic import ArithmeticFamily

    return ArithmeticFamily(operations=tuple(operations), instruct=instruct)


def _addition(instruct: bool = False) -> TaskFamily:
    from verifarm.envs.arithmetic import ArithmeticFamily

    return ArithmeticFamily(operations=("+",), instruct=instruct, name="addition")


def _math_answer(**options: Any) -> TaskFamily:
    from verifarm.envs.math_answer import MathAnswerFamily

    return MathAnswerFamily(**options)


def _python_function(**options: Any) -> TaskFamily:
    from verifarm.envs.python_function import PythonFunctionFamily

    return PythonFunctionFamily(**options)


def _human_eval(**options: Any) -> TaskFamily:
    from verifarm.envs.human_eval import HumanEvalFamily

    return HumanEvalFamily(**options)


def _c_program(**options: Any) -> TaskFamily:
    from verifarm.envs.c_program import CProgramFamily

    return CProgramFamily(**options)


def _c_program_multi_turn(**options: Any) -> TaskFamily:
    from verifarm.envs.c_program import CProgramFamily

    return CProgramFamily(multi_turn=True, **options)


def _program(**options: Any) -> TaskFamily:
    from verifarm.envs.program import ProgramFamily

    return ProgramFamily(**options)


def _program_multi_turn(**options: Any) -> TaskFamily:
    from verifarm.envs.program import ProgramFamily

    return ProgramFamily(multi_turn=True, **options)


def _translate(**options: Any) -> TaskFamily:
    from verifarm.envs.translation import TranslationFamily

    return TranslationFamily(**options)


def _reasoning_gym(**options: Any) -> TaskFamily:
    from verifarm.envs.reasoning_gym_adapter import ReasoningGymFamily

    return ReasoningGymFamily(**options)


ENV_IDS: dict[str, Callable[..., TaskFamily]] = {
    "verifarm/Arithmetic-v0": _arithmetic,
    "verifarm/Addition-v0": _addition,
    "verifarm/MathAnswer-v0": _math_answer,
    "verifarm/PythonFunction-v0": _python_function,
    "verifarm/HumanEval-v0": _human_eval,
    "verifarm/CProgram-v0": _c_program,
    "verifarm/CProgramMultiTurn-v0": _c_program_multi_turn,
    "verifarm/Program-v0": _program,
    "verifarm/ProgramMultiTurn-v0": _program_multi_turn,
    "verifarm/Translate-v0": _translate,
    "verifarm/ReasoningGym-v0": _reasoning_gym,
}


def accepted_languages(env_id: str) -> tuple[str, ...]:
    """The programming languages a completion for env_id may be written in (the `language` option picks one for
    the Program envs); empty for envs whose answers are not programs."""
    if env_id not in ENV_IDS:
        raise ValueError(f"unknown env id {env_id!r}; known: {sorted(ENV_IDS)}")
    if env_id in ("verifarm/Program-v0", "verifarm/ProgramMultiTurn-v0", "verifarm/Translate-v0"):
        from verifarm.sandbox.languages import LANGUAGE_NAMES

        return LANGUAGE_NAMES
    return {
        "verifarm/PythonFunction-v0": ("python",),
        "verifarm/HumanEval-v0": ("python",),
        "verifarm/CProgram-v0": ("c",),
        "verifarm/CProgramMultiTurn-v0": ("c",),
    }.get(env_id, ())


def get_family(env_id: str, **options: Any) -> TaskFamily:
    """The task family behind ``env_id``, built with the same keyword options ``gymnasium.make`` takes."""
    try:
        factory = ENV_IDS[env_id]
    except KeyError:
        raise ValueError(f"unknown env id {env_id!r}; known: {sorted(ENV_IDS)}") from None
    try:
        return factory(**options)
    except TypeError as error:
        if "argument" not in str(error):  # a bug inside a family, not an option the caller got wrong
            raise
        raise ValueError(f"bad options for {env_id}: {error}") from None


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
    import gymnasium

    for env_id in ENV_IDS:
        if env_id not in gymnasium.registry:
            gymnasium.register(
                id=env_id,
                entry_point="verifarm.envs.gym_env:TaskEnv",
                kwargs={"env_id": env_id},
                disable_env_checker=False,
            )
