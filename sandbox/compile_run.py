"""Build a program of any language of the table in one fresh sandbox, then run it once per input.

Compile and run are one logical run with separate limits (the language row's): the compile runs in one fresh
sandbox and returns its artefacts as bytes (compiler output capped by the compile limits' output_bytes); each input
then runs in its own fresh sandbox holding only those artefacts. The artefacts live in the caller's memory only and
are dropped with the ``Build``: no file of a compile outlives the sandbox run that made it, and nothing is shared
between tasks.

No compile cache: a verify compiles a source once and runs it on all its inputs; across verifies the same source
recurs only for duplicate completions, and a cache would be one more place where one task's artefact could reach
another's run. The compile share of a step is measured in benchmarks/env_step_throughput.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from verifarm.sandbox.backend import Backend
from verifarm.sandbox.languages import Language, get_language
from verifarm.sandbox.program import ExecResult, Limits, Program, Status
from verifarm.sandbox.selection import get_backend


@dataclass(frozen=True)
class Build:
    """A compiled (or, for interpreted languages, merely packaged) program: its artefacts live only here."""

    language: Language
    compile: ExecResult | None  # None for languages run from source
    artefacts: dict[str, bytes]

    @property
    def ok(self) -> bool:
        return (self.compile is None or self.compile.ok) and all(name in self.artefacts for name in self._needed())

    def _needed(self) -> tuple[str, ...]:
        return self.language.artefacts if self.language.compiled else (self.language.source_file,)

    @property
    def compile_seconds(self) -> float:
        return 0.0 if self.compile is None else self.compile.wall_seconds


def build(
    language: str | Language, source: str, backend: str | Backend = "auto", compile_limits: Limits | None = None
) -> Build:
    """Compile source in one fresh sandbox (languages run from source just keep it); artefacts come back as bytes."""
    row = get_language(language)
    limits = compile_limits or row.compile_limits  # a compiled language's row always has both (see Language)
    if row.compile_command is None or limits is None:
        return Build(row, None, {row.source_file: source.encode("utf-8", "surrogatepass")})
    program = Program(command=row.compile_command, files={row.source_file: source}, outputs=row.artefacts)
    compiled = get_backend(backend).run(program, limits)
    return Build(row, compiled, dict(compiled.files) if compiled.ok else {})


def run_build(
    built: Build, stdin: bytes, backend: str | Backend = "auto", run_limits: Limits | None = None
) -> ExecResult:
    """Run a successful build on one stdin in a fresh sandbox holding only its artefacts."""
    if not built.ok:
        raise ValueError(f"cannot run a {built.language.name} build that failed to compile")
    program = Program(command=built.language.run_command, files=dict(built.artefacts), stdin=stdin)
    return get_backend(backend).run(program, run_limits or built.language.run_limits)


@dataclass(frozen=True)
class LanguageRun:
    build: Build
    runs: list[ExecResult]  # one per input, in order; empty when the build failed

    @property
    def compile(self) -> ExecResult | None:
        return self.build.compile

    @property
    def compiled(self) -> bool:
        return self.build.ok


def compile_and_run(
    language: str | Language,
    source: str,
    inputs: list[bytes],
    backend: str | Backend = "auto",
    compile_limits: Limits | None = None,
    run_limits: Limits | None = None,
    stop_at_failure: bool = False,
) -> LanguageRun:
    """Build once, then run once per input, each in a fresh sandbox; stop_at_failure ends at the first run
    that is not ok (an endless loop then costs one run's CPU limit, not one per input)."""
    if not isinstance(inputs, list) or not all(isinstance(item, bytes) for item in inputs):
        raise ValueError("inputs must be a list of bytes, one stdin per run")
    built = build(language, source, backend, compile_limits)
    if not built.ok:
        return LanguageRun(built, [])
    runs: list[ExecResult] = []
    for stdin in inputs:
        runs.append(run_build(built, stdin, backend, run_limits))
        if stop_at_failure and runs[-1].status is not Status.OK:
            break
    return LanguageRun(built, runs)
