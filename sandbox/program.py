"""What the sandbox runs and what it reports: the contract every backend keeps."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Program:
    """Files written into a fresh work dir, then one command line run there."""

    command: tuple[str, ...]
    files: dict[str, bytes | str] = field(default_factory=dict)
    stdin: bytes = b""
    # Plain file names (no folders) read back from the work dir after the run,
    # e.g. a compiled binary; symlinks and non-regular files are never followed.
    outputs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.command:
            raise ValueError("Program.command must name at least the executable")
        if isinstance(self.command, str):
            raise ValueError("Program.command must be a sequence of arguments, not one string")
        for name in self.files:
            if not name or name.startswith("/") or ".." in name.split("/"):
                raise ValueError(f"file name {name!r} must be relative and stay inside the work dir")
        for name in self.outputs:
            if not name or "/" in name or name in (".", ".."):
                raise ValueError(f"output name {name!r} must be a plain file name in the work dir")

    def file_bytes(self) -> dict[str, bytes]:
        # surrogatepass: model text may hold lone surrogates; the program gets the raw bytes, the sandbox never raises
        return {
            name: data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
            for name, data in self.files.items()
        }


@dataclass(frozen=True)
class Limits:
    cpu_seconds: float = 10.0
    wall_seconds: float = 20.0
    memory_bytes: int = 512 * 1024 * 1024
    max_processes: int = 64
    output_bytes: int = 1024 * 1024
    file_size_bytes: int = 16 * 1024 * 1024
    open_files: int = 256
    network: bool = False

    def __post_init__(self) -> None:
        for name in (
            "cpu_seconds",
            "wall_seconds",
            "memory_bytes",
            "max_processes",
            "output_bytes",
            "file_size_bytes",
            "open_files",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be positive, got {getattr(self, name)!r}")


class Status(str, enum.Enum):
    OK = "ok"
    NONZERO_EXIT = "nonzero_exit"
    TIMEOUT = "timeout"
    MEMORY_LIMIT = "memory_limit"
    OUTPUT_LIMIT = "output_limit"
    KILLED = "killed"
    INFRA_ERROR = "infra_error"  # the sandbox failed, never the program's fault


@dataclass(frozen=True)
class ExecResult:
    status: Status
    exit_code: int | None
    signal: int | None
    stdout: bytes
    stderr: bytes
    truncated: bool
    cpu_seconds: float
    wall_seconds: float
    peak_memory_bytes: int
    backend: str
    detail: str = ""  # why, for infra errors and limit hits
    files: dict[str, bytes] = field(default_factory=dict)  # the Program's outputs that existed

    @property
    def ok(self) -> bool:
        return self.status is Status.OK
