"""The table of languages: the only place a language is described (compile_run.py builds and runs one).

A row names the source file, the compile command (None for languages run from source), the artefacts the compile
leaves for the run, the run command, and each step's limits: the limits every run of that language gets, in the
farm's Program envs as in the sandbox's own tests and commands.

Toolchains come from Debian's packages (``Language.packages``, installed by .ci/run and infra/sandbox.Dockerfile)
and live under /usr, which every backend shows read-only. Where a toolchain also reads a few files under /etc
(Debian's alternatives symlinks, the JDK's jvm.cfg), the row lists them in ``system_paths`` and the bwrap and
docker backends bind exactly those read-only.
"""

from __future__ import annotations

import dataclasses
import glob
import os
from dataclasses import dataclass

from verifarm.sandbox.program import Limits


@dataclass(frozen=True)
class Language:
    name: str
    source_file: str
    run_command: tuple[str, ...]
    run_limits: Limits
    fence: str  # the Markdown code-fence tag a completion uses
    packages: tuple[str, ...]  # Debian packages that provide the toolchain
    compile_command: tuple[str, ...] | None = None
    compile_limits: Limits | None = None
    artefacts: tuple[str, ...] = ()  # files the compile leaves that the run needs
    system_paths: tuple[str, ...] = ()  # host paths outside /usr the toolchain reads (globs allowed)
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if (self.compile_command is None) != (self.compile_limits is None) or (
            self.compile_command is not None and not self.artefacts
        ):
            raise ValueError(f"language {self.name!r}: a compile command needs compile limits and artefacts")

    @property
    def compiled(self) -> bool:
        return self.compile_command is not None

    def with_limits(self, compile_limits: Limits | None = None, run_limits: Limits | None = None) -> Language:
        """This row with other limits (an env's own), everything else unchanged."""
        return dataclasses.replace(
            self, compile_limits=compile_limits or self.compile_limits, run_limits=run_limits or self.run_limits
        )


MIB = 1024 * 1024
# gcc forks cc1, as and collect2/ld, and cc1 wants more memory than the programs it builds.
C_COMPILE_LIMITS = Limits(
    cpu_seconds=10,
    wall_seconds=20,
    memory_bytes=1024 * MIB,
    max_processes=16,
    output_bytes=16 * 1024,
    file_size_bytes=16 * MIB,
    open_files=128,
)
# Wall time well above the CPU limit (a loaded machine stretches it); output room for the few thousand numbers a
# Program env's test prints. Every language's run limits start from these.
C_RUN_LIMITS = Limits(
    cpu_seconds=2,
    wall_seconds=10,
    memory_bytes=256 * MIB,
    max_processes=8,
    output_bytes=256 * 1024,
    file_size_bytes=1024 * 1024,
    open_files=64,
)
C_COMPILER = (
    "gcc",
    "-std=gnu11",
    "-O1",
    "-pipe",
    "-fdiagnostics-color=never",
    "-fmax-errors=20",
    "-o",
    "prog",
    "main.c",
    "-lm",
)
# cc1plus needs more memory than cc1 (the standard headers alone are large).
CPP_COMPILE_LIMITS = dataclasses.replace(C_COMPILE_LIMITS, cpu_seconds=20, wall_seconds=40, memory_bytes=1536 * MIB)
# go build runs compile and link as separate processes, each with a dozen threads (RLIMIT_NPROC counts threads);
# its build cache goes to $HOME/.cache, which every backend points at the run's own work dir.
GO_COMPILE_LIMITS = Limits(
    cpu_seconds=30,
    wall_seconds=60,
    memory_bytes=2048 * MIB,
    max_processes=128,
    output_bytes=16 * 1024,
    file_size_bytes=64 * MIB,
    open_files=256,
)
# The Go runtime reserves about 600 MiB of address space (page summaries) before main runs.
GO_RUN_LIMITS = dataclasses.replace(C_RUN_LIMITS, memory_bytes=1024 * MIB, max_processes=32)
# rustc runs LLVM on several threads and then gcc as its linker.
RUST_COMPILE_LIMITS = Limits(
    cpu_seconds=30,
    wall_seconds=60,
    memory_bytes=2048 * MIB,
    max_processes=64,
    output_bytes=16 * 1024,
    file_size_bytes=64 * MIB,
    open_files=256,
)
# V8 reserves address space far beyond what it uses, and node starts a few worker threads.
NODE_RUN_LIMITS = dataclasses.replace(
    C_RUN_LIMITS, cpu_seconds=4, wall_seconds=10, memory_bytes=2048 * MIB, max_processes=32, open_files=128
)
# The JVM reserves its heap, metaspace and code cache up front and starts about twenty threads; the flags keep
# those reservations small enough for an address-space limit, and one compiler thread keeps start-up cheap.
JVM_FLAGS = (
    "-Xmx256m",
    "-Xss16m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:ReservedCodeCacheSize=32m",
    "-XX:CompressedClassSpaceSize=64m",
    "-XX:MaxMetaspaceSize=128m",
    "-XX:ActiveProcessorCount=1",
    "-Xshare:auto",
)
JAVA_COMPILE_LIMITS = Limits(
    cpu_seconds=30,
    wall_seconds=60,
    memory_bytes=2048 * MIB,
    max_processes=64,
    output_bytes=16 * 1024,
    file_size_bytes=16 * MIB,
    open_files=256,
)
JAVA_RUN_LIMITS = dataclasses.replace(
    C_RUN_LIMITS, cpu_seconds=4, wall_seconds=10, memory_bytes=1536 * MIB, max_processes=64, open_files=128
)
PYTHON_RUN_LIMITS = dataclasses.replace(C_RUN_LIMITS, cpu_seconds=4, wall_seconds=10)

LANGUAGES: tuple[Language, ...] = (
    Language(
        "python",
        "main.py",
        ("python3", "-I", "-S", "main.py"),
        PYTHON_RUN_LIMITS,
        "python",
        ("python3",),
        aliases=("py", "python3"),
    ),
    Language(
        "c",
        "main.c",
        ("./prog",),
        C_RUN_LIMITS,
        "c",
        ("gcc", "libc6-dev"),
        compile_command=C_COMPILER,
        compile_limits=C_COMPILE_LIMITS,
        artefacts=("prog",),
    ),
    Language(
        "cpp",
        "main.cpp",
        ("./prog",),
        C_RUN_LIMITS,
        "cpp",
        ("g++",),
        compile_command=(
            "g++",
            "-std=gnu++17",
            "-O1",
            "-pipe",
            "-fdiagnostics-color=never",
            "-fmax-errors=20",
            "-o",
            "prog",
            "main.cpp",
        ),
        compile_limits=CPP_COMPILE_LIMITS,
        artefacts=("prog",),
        aliases=("c++", "cxx"),
    ),
    Language(
        "go",
        "main.go",
        ("./prog",),
        GO_RUN_LIMITS,
        "go",
        ("golang-go",),
        compile_command=("go", "build", "-ldflags=-s -w", "-o", "prog", "main.go"),
        compile_limits=GO_COMPILE_LIMITS,
        artefacts=("prog",),
        aliases=("golang",),
    ),
    # gcc links directly: Debian's default linker `cc` is an /etc/alternatives symlink. Binaries are stripped (Go's
    # and Rust's carry megabytes of symbols), as every run ships the artefacts into its sandbox.
    Language(
        "rust",
        "main.rs",
        ("./prog",),
        C_RUN_LIMITS,
        "rust",
        ("rustc", "gcc"),
        compile_command=(
            "rustc",
            "--edition",
            "2021",
            "-C",
            "opt-level=1",
            "-C",
            "linker=gcc",
            "-C",
            "codegen-units=4",
            "-C",
            "strip=symbols",
            "-o",
            "prog",
            "main.rs",
        ),
        compile_limits=RUST_COMPILE_LIMITS,
        artefacts=("prog",),
        aliases=("rs",),
    ),
    Language(
        "javascript",
        "main.js",
        ("node", "--max-old-space-size=256", "--stack-size=8000", "main.js"),
        NODE_RUN_LIMITS,
        "javascript",
        ("nodejs",),
        aliases=("js", "node"),
    ),
    # The classes go into one zip (a jar without a manifest) so the run gets them whatever javac named them.
    Language(
        "java",
        "Main.java",
        ("java", *JVM_FLAGS, "-cp", "classes.jar", "Main"),
        JAVA_RUN_LIMITS,
        "java",
        ("default-jdk-headless",),
        compile_command=(
            "sh",
            "-c",
            "javac "
            + " ".join("-J" + flag for flag in JVM_FLAGS)
            + " -encoding UTF-8 -Xmaxerrs 20 -d classes Main.java && cd classes && "
            "python3 -I -S -m zipfile -c ../classes.jar . >/dev/null",
        ),
        compile_limits=JAVA_COMPILE_LIMITS,
        artefacts=("classes.jar",),
        system_paths=("/etc/alternatives", "/etc/java-*-openjdk"),
    ),
)
LANGUAGES_BY_NAME: dict[str, Language] = {
    key: language for language in LANGUAGES for key in (language.name, *language.aliases)
}
LANGUAGE_NAMES: tuple[str, ...] = tuple(language.name for language in LANGUAGES)


def get_language(name: str | Language) -> Language:
    if isinstance(name, Language):
        return name
    try:
        return LANGUAGES_BY_NAME[str(name).strip().lower()]
    except KeyError:
        raise ValueError(f"unknown language {name!r}; choose one of {', '.join(LANGUAGE_NAMES)}") from None


def host_system_paths() -> tuple[str, ...]:
    """The existing host paths outside /usr that some language's toolchain reads: sandboxes bind these read-only."""
    found: list[str] = []
    for language in LANGUAGES:
        for pattern in language.system_paths:
            for path in sorted(glob.glob(pattern)):
                if os.path.isdir(path) and path not in found:
                    found.append(path)
    return tuple(found)
