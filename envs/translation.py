"""Translate a verified program into another language; keep only translations that behave the same.

One family is one source program: a verified solution (a passing record of a Program or CProgram env, named by
its env, options, seed and difficulty, so the problem and its hidden tests are regenerated exactly) and a target
language. The prompt shows the problem and the source program and asks for the same program in the target
language. A translation passes when (1) it passes the problem's own hidden tests and (2) on at least 50 inputs
drawn from the problem's input generator it prints what the source prints: both programs run in the sandbox,
each input in a fresh sandbox, outputs compared here. The first differing input is in the verdict's details.

The source's outputs on the differential inputs are computed once per family (one source, many samples) and kept
in memory: they are results of the trusted, verified source, never a build artefact, and belong to this family
alone. Inputs on which the source itself fails (a time limit on a large input, say) are left out and counted;
fewer than the required number of comparable inputs fails the task as unusable, never the translation.
"""

from __future__ import annotations

import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

from verifarm.envs.base import Task, Verdict
from verifarm.envs.program import DIALECTS, ProgramFamily, extract_source, normalize_output
from verifarm.envs.program_envs import PROGRAM_ENVS
from verifarm.envs.program_problems import PROBLEMS_BY_NAME
from verifarm.sandbox.compile_run import Build, build, run_build
from verifarm.sandbox.program import ExecResult, Status

MIN_DIFFERENTIAL_INPUTS = 50
DIFFERENTIAL_MAX_SIZE = 64  # inputs go past the hidden tests' small sizes, where special cases hide
CLIP = 400
DIFFERENTIAL_PARALLEL = 4


_RUNNERS: dict[int, ThreadPoolExecutor] = {}
_RUNNERS_LOCK = threading.Lock()


def _runner() -> ThreadPoolExecutor:
    """This process's threads for differential runs. They live as long as the process: a warm bwrap sandbox
    started from a thread dies with that thread (bwrap's --die-with-parent is per thread)."""
    with _RUNNERS_LOCK:
        pid = os.getpid()  # a forked worker gets threads of its own
        if pid not in _RUNNERS:
            _RUNNERS[pid] = ThreadPoolExecutor(max_workers=DIFFERENTIAL_PARALLEL, thread_name_prefix="differential")
        return _RUNNERS[pid]


def _clip(text: str) -> str:
    return text if len(text) <= CLIP else text[:CLIP] + f"... [{len(text) - CLIP} more chars]"


class TranslationFamily:
    """Tasks that ask for ``source_completion`` (which passed ``source_env_id``) in ``target_language``."""

    verifier_version = "translate-1"
    max_completion_chars = 8192

    def __init__(
        self,
        target_language: str = "c",
        source_env_id: str = "verifarm/Program-v0",
        source_options: dict[str, Any] | None = None,
        source_seed: int = 0,
        source_difficulty: int = 1,
        source_completion: str | None = None,
        source_record_id: str = "",
        differential_inputs: int = MIN_DIFFERENTIAL_INPUTS,
        backend: str = "auto",
    ) -> None:
        if differential_inputs < MIN_DIFFERENTIAL_INPUTS:
            raise ValueError(
                f"differential_inputs must be at least {MIN_DIFFERENTIAL_INPUTS}, got {differential_inputs}"
            )
        if source_env_id not in PROGRAM_ENVS:
            raise ValueError(
                f"{source_env_id} is not a program env; translations start from Program or CProgram records"
            )
        source_family = cast(
            ProgramFamily, PROGRAM_ENVS[source_env_id].build(source_env_id, **dict(source_options or {}))
        )
        self.source_env_id = source_env_id
        self.source_family = source_family
        self.source_language = source_family.language
        self.target = ProgramFamily(language=target_language, backend=backend)
        if self.target.language.name == self.source_language.name:
            raise ValueError(f"the source is already in {self.source_language.name}; pick another target language")
        self.source_task = source_family.generate(source_seed, source_difficulty)
        self.problem = PROBLEMS_BY_NAME[self.source_task.data["problem"]]
        # Without a completion the family translates the problem's own reference (`verifarm envs show`).
        self.source_code = extract_source(
            source_completion if source_completion is not None else self.source_task.reference
        )
        self.source_record_id = source_record_id
        self.differential_inputs = differential_inputs
        self.backend = backend
        self.min_difficulty = self.max_difficulty = source_difficulty
        self.name = f"translate_{self.source_language.name}_to_{self.target.language.name}"
        self._source_outputs: list[tuple[str, str | None]] | None = None
        self._lock = threading.Lock()

    def lineage(self) -> dict[str, Any]:
        return {
            "source_record_id": self.source_record_id,
            "source_env_id": self.source_env_id,
            "source_language": self.source_language.name,
            "target_language": self.target.language.name,
            "problem": self.problem.name,
        }

    def generate(self, seed: int, difficulty: int) -> Task:
        """The translation task (seed and difficulty are the source's; a family holds one task)."""
        if difficulty != self.min_difficulty:
            raise ValueError(f"difficulty must be the source's, {self.min_difficulty}, got {difficulty}")
        source, target = self.source_language, self.target.language
        prompt = (
            f"Translate this {DIALECTS[source.name]} program into {DIALECTS[target.name]} (standard library "
            f"only). The translation must read the same standard input and print exactly the same output.\n\n"
            f"The program solves this problem:\n{self.problem.statement}\n\n```{source.fence}\n"
            f"{self.source_code.rstrip()}\n```\n\nGive the whole translated program in a ```{target.fence} "
            "code block.\n"
        )
        record = self.source_record_id[:16] or f"s{self.source_task.task_id}"
        return Task(
            task_id=f"translate[{self.problem.name}]:{source.name}->{target.name}:{record}",
            prompt=prompt,
            reference=f"```{target.fence}\n{self.problem.references[target.name]}```\n",
            difficulty=self.min_difficulty,
            data={**self.source_task.data, "language": target.name, "lineage": self.lineage()},
        )

    def differential_inputs_for(self) -> list[str]:
        rng = random.Random(f"translate-differential:{self.source_task.task_id}")
        return [
            self.problem.make_input(rng, rng.randint(1, DIFFERENTIAL_MAX_SIZE)) for _ in range(self.differential_inputs)
        ]

    def source_outputs(self) -> list[tuple[str, str | None]]:
        """(input, source output or None where the source itself failed), computed once in the sandbox."""
        with self._lock:
            if self._source_outputs is None:
                built = build(self.source_family.language, self.source_code, self.backend)
                if not built.ok:
                    detail = built.compile.detail if built.compile is not None else ""
                    raise RuntimeError(f"the verified source no longer builds: {detail}")
                inputs = self.differential_inputs_for()
                pairs = []
                for text, run in zip(inputs, self._run_all(built, inputs)):
                    if run.status is Status.INFRA_ERROR:
                        raise RuntimeError(f"sandbox failed on the source: {run.detail}")
                    pairs.append((text, run.stdout.decode("utf-8", "replace") if run.ok else None))
                self._source_outputs = pairs
            return self._source_outputs

    def _run_all(self, built: Build, inputs: list[str]) -> list[ExecResult]:
        """Each input in its own fresh sandbox, a few at once (the warm pools hold several), results in order."""
        return list(_runner().map(lambda text: run_build(built, text.encode(), self.backend), inputs))

    def verify(self, task: Task, completion: str) -> Verdict:
        verdict, built = self.target.judge(task, completion)
        details = {**verdict.details, "lineage": self.lineage(), "verifier_version": self.verifier_version}
        if not verdict.passed or built is None:
            return Verdict(verdict.reward, False, verdict.reason, details, verdict.infra_error, verdict.sandbox_seconds)
        started = time.perf_counter()
        try:
            pairs = self.source_outputs()
        except RuntimeError as error:
            return Verdict(
                0.0,
                False,
                f"differential check could not run the source: {error}"[:300],
                details,
                infra_error="sandbox failed" in str(error),
                sandbox_seconds=verdict.sandbox_seconds,
            )
        comparable = [(text, expected) for text, expected in pairs if expected is not None]
        details["differential_source_failures"] = len(pairs) - len(comparable)
        if len(comparable) < MIN_DIFFERENTIAL_INPUTS:
            details["differential_seconds"] = round(time.perf_counter() - started, 4)
            return Verdict(
                0.0,
                False,
                f"the source fails on {len(pairs) - len(comparable)} generated inputs; too few left to compare",
                details,
                sandbox_seconds=verdict.sandbox_seconds,
            )
        seconds = verdict.sandbox_seconds
        runs = self._run_all(built, [text for text, _ in comparable])
        for index, ((text, expected), run) in enumerate(zip(comparable, runs)):
            seconds += run.wall_seconds
            if run.status is Status.INFRA_ERROR:
                details["differential_seconds"] = round(time.perf_counter() - started, 4)
                return Verdict(
                    0.0,
                    False,
                    f"sandbox infrastructure error: {run.detail[:200]}",
                    details,
                    infra_error=True,
                    sandbox_seconds=seconds,
                )
            got = run.stdout.decode("utf-8", "replace")
            if not run.ok or normalize_output(got) != normalize_output(expected):
                what = "wrong output" if run.ok else f"{run.status.value} where the source printed its output"
                details.update(
                    {
                        "differential_compared": index + 1,
                        "differential_first_difference": {
                            "index": index,
                            "input": _clip(text),
                            "source_output": _clip(expected),
                            "translation_output": _clip(got),
                            "translation_status": run.status.value,
                        },
                    }
                )
                details["differential_seconds"] = round(time.perf_counter() - started, 4)
                details["feedback"] = (
                    f"It passed the tests but disagrees with the source program on this input:\n"
                    f"{_clip(text)}\nSource output:\n{_clip(expected)}\nYour output:\n{_clip(got)}"
                )
                return Verdict(
                    0.0,
                    False,
                    f"differential check: {what} on generated input {index + 1}",
                    details,
                    sandbox_seconds=seconds,
                )
        details["differential_compared"] = len(comparable)
        details["differential_seconds"] = round(time.perf_counter() - started, 4)
        return Verdict(
            1.0,
            True,
            f"{verdict.reason}; agrees with the source on {len(comparable)} generated inputs",
            details,
            sandbox_seconds=seconds,
        )
