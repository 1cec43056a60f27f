"""Compiled languages: compile in one sandbox run, execute the binary in others, each step with its own limits."""

from __future__ import annotations

from dataclasses import dataclass

from verifarm.sandbox.backend import Backend, get_backend
from verifarm.sandbox.program import ExecResult, Limits, Program

# gcc forks cc1, as and collect2/ld, and cc1 wants more memory than the programs it builds.
C_COMPILE_LIMITS = Limits(cpu_seconds=10, wall_seconds=20, memory_bytes=1024 * 1024 * 1024, max_processes=16,
                          output_bytes=16 * 1024, file_size_bytes=16 * 1024 * 1024, open_files=128)
C_RUN_LIMITS = Limits(cpu_seconds=2, wall_seconds=5, memory_bytes=256 * 1024 * 1024, max_processes=8,
                      output_bytes=64 * 1024, file_size_bytes=1024 * 1024, open_files=64)
C_COMPILER = ("gcc", "-std=gnu11", "-O1", "-pipe", "-fdiagnostics-color=never", "-fmax-errors=20",
              "-o", "prog", "main.c", "-lm")


@dataclass(frozen=True)
class CRun:
    compile: ExecResult
    runs: list[ExecResult]  # one per input, in order; empty when compilation failed

    @property
    def compiled(self) -> bool:
        return self.compile.ok and bool(self.runs or "prog" in self.compile.files)


def compile_c(source: str, limits: Limits = C_COMPILE_LIMITS, backend: "str | Backend" = "auto") -> ExecResult:
    """Compile main.c to prog; the binary comes back in result.files['prog'] (compiler output capped)."""
    program = Program(command=C_COMPILER, files={"main.c": source}, outputs=("prog",))
    return get_backend(backend).run(program, limits)


def run_binary(binary: bytes, stdin: bytes, limits: Limits = C_RUN_LIMITS,
               backend: "str | Backend" = "auto") -> ExecResult:
    """Run a binary from compile_c as ./prog in a fresh sandbox with stdin."""
    return get_backend(backend).run(Program(command=("./prog",), files={"prog": binary}, stdin=stdin), limits)


def compile_and_run_c(source: str, inputs: list[bytes], compile_limits: Limits = C_COMPILE_LIMITS,
                      run_limits: Limits = C_RUN_LIMITS, backend: "str | Backend" = "auto") -> CRun:
    """Compile once, then run the binary once per input, each run in a fresh sandbox."""
    if not isinstance(inputs, list) or not all(isinstance(item, bytes) for item in inputs):
        raise ValueError("inputs must be a list of bytes, one stdin per run")
    compiled = compile_c(source, compile_limits, backend)
    binary = compiled.files.get("prog")
    if not compiled.ok or binary is None:
        return CRun(compiled, [])
    return CRun(compiled, [run_binary(binary, stdin, run_limits, backend) for stdin in inputs])
