"""Checkpoint registry: monotonically numbered policy versions in a directory, each checksummed.

Layout under `root`: `v000001/`, `v000002/`, ... each a Hugging Face folder (config.json, safetensors,
tokenizer files) plus `manifest.json` (SHA-256 per file, a content checksum over them, metadata).
A version is written into a hidden temporary folder, fsynced, then renamed into place, so a crash
mid-save leaves at most an ignored `.tmp-*` folder, never a half checkpoint.

Beside the versions, `drafters/v000002/` holds the small drafter distilled from version 2 for speculative
sampling (weights, config and a manifest of the same format, whose metadata names the policy version and
checksum it was distilled from and its measured acceptance rate). Versions never change once published;
a drafter may be replaced, and a version without one of its own is served by the newest older drafter.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 1
_VERSION_DIR = re.compile(r"^v(\d{6,})$")
TEMP_PREFIX = ".tmp-"
DRAFTERS_DIR = "drafters"
_LOCK_NAME = ".publish.lock"
HASH_CHUNK = 1 << 20


class CorruptCheckpoint(RuntimeError):
    """A checkpoint whose files do not match its manifest (or that has no readable manifest)."""

    def __init__(self, version: int, path: Path, problems: list[str]):
        self.version = version
        self.path = path
        self.problems = problems
        super().__init__(f"checkpoint v{version} at {path} is corrupt and was refused: " + "; ".join(problems))


class NoCheckpoint(LookupError):
    """The registry holds no usable version (empty, or every version is corrupt)."""


@dataclass(frozen=True)
class VersionInfo:
    version: int
    path: Path
    ok: bool  # every file matches the manifest's SHA-256
    checksum: str | None  # content checksum over all files; None if the manifest is unreadable
    created_at: str | None
    metadata: dict[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


@dataclass
class LoadedPolicy:
    model: Any  # a transformers PreTrainedModel
    tokenizer: Any  # a transformers PreTrainedTokenizerFast
    version: int
    metadata: dict[str, Any]
    path: Path
    checksum: str


@dataclass(frozen=True)
class DrafterInfo:
    """The drafter chosen for a policy version: its own (`stale` False) or an older version's."""

    policy_version: int  # the version whose sampling it serves
    distilled_from: int  # the version it was distilled from
    path: Path
    ok: bool
    metadata: dict[str, Any] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    @property
    def stale(self) -> bool:
        return self.distilled_from != self.policy_version

    @property
    def acceptance_rate(self) -> float | None:
        rate = self.metadata.get("acceptance_rate")
        return None if rate is None else float(rate)


def version_dir_name(version: int) -> str:
    return f"v{version:06d}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def content_checksum(file_hashes: dict[str, str]) -> str:
    """One checksum for a whole checkpoint: SHA-256 over the sorted `name:hash` lines."""
    lines = "".join(f"{name}:{file_hashes[name]}\n" for name in sorted(file_hashes))
    return hashlib.sha256(lines.encode()).hexdigest()


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _check_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata must be a dict, got {type(metadata).__name__}")
    try:
        text = json.dumps(metadata, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"metadata must be JSON-serialisable with finite numbers (convert tensors and paths first): {error}"
        ) from error
    return json.loads(text)


class CheckpointRegistry:
    """Publishes and loads policy versions under one root folder (local or a shared mount)."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        # Verification results keyed by version and the stat of its files, so polling the newest good
        # version does not re-hash unchanged checkpoints; a rewritten file changes the key.
        self._verified: dict[int, tuple[tuple, VersionInfo]] = {}

    # ----- listing -------------------------------------------------------------------------------------
    def published_versions(self) -> list[int]:
        """Version numbers present on disk, ascending; cheap (one directory listing, no hashing)."""
        if not self.root.is_dir():
            return []
        numbers = []
        for entry in os.scandir(self.root):
            match = _VERSION_DIR.match(entry.name)
            if match and entry.is_dir():
                numbers.append(int(match.group(1)))
        return sorted(numbers)

    def latest_published(self) -> int | None:
        """The highest version number on disk without verifying it: the cheap poll for workers.

        A worker compares this with the version it holds and calls `load()` only when it grew.
        """
        published = self.published_versions()
        return published[-1] if published else None

    def newer_than(self, current: int | None) -> int | None:
        """The newest good version above `current`, or None; hashes nothing unless a newer one exists."""
        published = self.latest_published()
        if published is None or (current is not None and published <= current):
            return None
        good = self.latest_version()
        if good is None or (current is not None and good <= current):
            return None
        return good

    def path(self, version: int) -> Path:
        if not isinstance(version, int) or version < 1:
            raise ValueError(f"a version is a positive integer, got {version!r}")
        return self.root / version_dir_name(version)

    def inspect(self, version: int) -> VersionInfo:
        """Verify one version's files against its manifest (cached while the files are unchanged)."""
        path = self.path(version)
        if not path.is_dir():
            raise KeyError(f"no version {version} in {self.root} (published: {self.published_versions()})")
        stamp = self._stat_stamp(path)
        cached = self._verified.get(version)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        info = self.verify_folder(version, path)
        self._verified[version] = (stamp, info)
        return info

    def versions(self) -> list[VersionInfo]:
        return [self.inspect(version) for version in self.published_versions()]

    def latest_version(self) -> int | None:
        """The newest version whose files all match their manifest; None if there is none."""
        for version in reversed(self.published_versions()):
            if self.inspect(version).ok:
                return version
        return None

    # ----- publishing ----------------------------------------------------------------------------------
    def publish(self, model: Any, tokenizer: Any, metadata: dict[str, Any] | None = None) -> int:
        """Save `model` and `tokenizer` as the next version and return its number.

        Writing happens in a temporary folder next to the versions; only the final rename makes the
        version visible, under a lock so concurrent publishers get distinct numbers.
        """
        clean_metadata = _check_metadata(dict(metadata or {}))
        staging, file_hashes = self._stage(model, tokenizer)
        try:
            with self._publish_lock():
                version = self._rename_into_place(staging, file_hashes, clean_metadata)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        logger.info("published policy v%d at %s", version, self.path(version))
        return version

    def _stage(self, model: Any, tokenizer: Any | None) -> tuple[Path, dict[str, str]]:
        """Save into a fresh temporary folder under the root, fsynced; return it and its files' SHA-256."""
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=self.root))
        try:
            model.save_pretrained(staging, safe_serialization=True)
            if tokenizer is not None:
                tokenizer.save_pretrained(staging)
            file_hashes = {}
            for file in sorted(p for p in staging.rglob("*") if p.is_file()):
                _fsync_path(file)
                file_hashes[file.relative_to(staging).as_posix()] = sha256_file(file)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return staging, file_hashes

    @staticmethod
    def _write_manifest(staging: Path, version: int, file_hashes: dict[str, str], metadata: dict[str, Any]) -> None:
        manifest = {
            "format": MANIFEST_FORMAT,
            "version": version,
            "created_at": datetime.now(timezone.utc).isoformat(),
            "checksum": content_checksum(file_hashes),
            "files": file_hashes,
            "metadata": metadata,
        }
        with open(staging / MANIFEST_NAME, "w") as handle:
            json.dump(manifest, handle, indent=2, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        _fsync_path(staging)

    def _rename_into_place(self, staging: Path, file_hashes: dict[str, str], metadata: dict[str, Any]) -> int:
        latest = self.latest_published()
        version = (latest or 0) + 1
        while True:
            self._write_manifest(staging, version, file_hashes, metadata)
            try:
                # rename(2) onto an existing non-empty folder fails, so even a publisher on a file
                # system without working locks cannot overwrite another's version.
                os.rename(staging, self.path(version))
            except OSError as error:
                if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                    raise
                version += 1
                continue
            _fsync_path(self.root)
            return version

    @contextlib.contextmanager
    def _publish_lock(self) -> Iterator[None]:
        with open(self.root / _LOCK_NAME, "a") as lock_file:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)

    def clean_stale_temp(self, older_than_seconds: float = 3600.0) -> list[Path]:
        """Remove temporary folders left by crashed publishers (old enough that no save is still running)."""
        if not self.root.is_dir():
            return []
        removed = []
        cutoff = time.time() - older_than_seconds
        for entry in self.root.iterdir():
            if entry.name.startswith(TEMP_PREFIX) and entry.is_dir() and entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
        return removed

    # ----- drafters ------------------------------------------------------------------------------------
    def drafter_path(self, version: int) -> Path:
        self.path(version)  # the same check of the number
        return self.root / DRAFTERS_DIR / version_dir_name(version)

    def publish_drafter(self, version: int, drafter: Any, metadata: dict[str, Any] | None = None) -> Path:
        """Save `drafter` as the drafter of policy `version` (replacing an earlier one) and return its folder.

        The metadata records the version's checksum, so a drafter is never mistaken for another's.
        """
        info = self.inspect(version)
        if not info.ok:
            raise CorruptCheckpoint(version, info.path, list(info.problems))
        clean_metadata = _check_metadata(
            {**dict(metadata or {}), "policy_version": version, "policy_checksum": info.checksum}
        )
        staging, file_hashes = self._stage(drafter, None)
        target = self.drafter_path(version)
        try:
            self._write_manifest(staging, version, file_hashes, clean_metadata)
            target.parent.mkdir(exist_ok=True)
            with self._publish_lock():
                # Move the old drafter aside first: rename(2) cannot replace a non-empty folder, and a
                # reader between the two renames finds no drafter (it samples plainly), never half of one.
                retired = None
                if target.exists():
                    retired = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=self.root))
                    os.rename(target, retired / "old")
                os.rename(staging, target)
                _fsync_path(target.parent)
            if retired is not None:
                shutil.rmtree(retired, ignore_errors=True)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        logger.info("published the drafter of policy v%d at %s", version, target)
        return target

    def drafter_versions(self) -> list[int]:
        """Policy versions that have a drafter of their own, ascending."""
        folder = self.root / DRAFTERS_DIR
        if not folder.is_dir():
            return []
        return sorted(int(m.group(1)) for m in map(_VERSION_DIR.match, os.listdir(folder)) if m)

    def drafter_for(self, version: int) -> DrafterInfo | None:
        """The drafter to sample `version` with: its own if published and intact, else the newest intact one
        of an older version (stale: any drafter of the same vocabulary leaves speculative sampling exact,
        a stale one only proposes tokens the policy keeps less often); None if there is none."""
        for source in reversed([v for v in self.drafter_versions() if v <= version]):
            checked = self.verify_folder(source, self.drafter_path(source))
            info = DrafterInfo(version, source, checked.path, checked.ok, checked.metadata, checked.problems)
            if info.ok:
                return info
            logger.warning("skipping corrupt drafter of v%d (%s)", source, "; ".join(info.problems))
        return None

    def load_drafter(self, version: int, *, device: str | None = None, dtype: Any = None) -> tuple[Any, DrafterInfo]:
        """Load the drafter `drafter_for(version)` picks; raises NoCheckpoint if there is none."""
        info = self.drafter_for(version)
        if info is None:
            raise NoCheckpoint(
                f"no drafter for policy v{version} in {self.root}; distill one first (verifarm policy drafter)"
            )
        from transformers import AutoModelForCausalLM

        # deferred: registers the nope rotary type; loads torch and transformers, as the caller is about to
        import verifarm.policy.positions  # noqa: F401

        model = AutoModelForCausalLM.from_pretrained(info.path, **({"dtype": dtype} if dtype is not None else {}))
        if device is not None:
            # transformers wraps Module.to in functools.wraps, whose type loses the binding to self
            model = model.to(device)  # type: ignore[arg-type]
        return model.eval(), info

    # ----- loading -------------------------------------------------------------------------------------
    def load(self, version: int | None = None, *, device: str | None = None, dtype: Any = None) -> LoadedPolicy:
        """Load a verified version; `None` means the newest good one (corrupt newer ones are skipped).

        An explicit version that fails verification raises `CorruptCheckpoint`.
        """
        if version is None:
            version = self._newest_good_or_raise()
        info = self.inspect(version)
        if not info.ok:
            raise CorruptCheckpoint(version, info.path, list(info.problems))
        from transformers import AutoModelForCausalLM, AutoTokenizer

        # deferred: registers the nope rotary type; loads torch and transformers, as the caller is about to
        import verifarm.policy.positions  # noqa: F401

        kwargs: dict[str, Any] = {}
        if dtype is not None:
            kwargs["dtype"] = dtype
        model = AutoModelForCausalLM.from_pretrained(info.path, **kwargs)
        if device is not None:
            # transformers wraps Module.to in functools.wraps, whose type loses the binding to self
            model = model.to(device)  # type: ignore[arg-type]
        model.eval()
        tokenizer = AutoTokenizer.from_pretrained(info.path)
        return LoadedPolicy(
            model=model,
            tokenizer=tokenizer,
            version=version,
            metadata=dict(info.metadata),
            path=info.path,
            checksum=info.checksum or "",
        )

    def _newest_good_or_raise(self) -> int:
        published = self.published_versions()
        for version in reversed(published):
            info = self.inspect(version)
            if info.ok:
                return version
            logger.warning(
                "skipping corrupt policy v%d (%s); falling back to an older version",
                version,
                "; ".join(info.problems),
            )
        if not published:
            raise NoCheckpoint(f"no policy version in {self.root}; publish one first (verifarm policy init)")
        raise NoCheckpoint(f"every policy version in {self.root} is corrupt: {published}")

    # ----- verification --------------------------------------------------------------------------------
    @staticmethod
    def _stat_stamp(path: Path) -> tuple:
        stamp = []
        for file in sorted(p for p in path.rglob("*") if p.is_file()):
            stat = file.stat()
            stamp.append((file.relative_to(path).as_posix(), stat.st_size, stat.st_mtime_ns, stat.st_ino))
        return tuple(stamp)

    @staticmethod
    def verify_folder(version: int, path: Path) -> VersionInfo:
        """Check a checkpoint folder's files against its manifest (also one outside any registry)."""
        manifest_path = path / MANIFEST_NAME
        try:
            manifest = json.loads(manifest_path.read_text())
            expected: dict[str, str] = dict(manifest["files"])
            checksum = str(manifest["checksum"])
            metadata = dict(manifest.get("metadata", {}))
            created_at = manifest.get("created_at")
        except (OSError, ValueError, KeyError, TypeError) as error:
            return VersionInfo(version, path, False, None, None, {}, (f"manifest unreadable: {error}",))
        problems = []
        if content_checksum(expected) != checksum:
            problems.append("manifest checksum does not match its file list")
        present = {p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file() and p.name != MANIFEST_NAME}
        for name in sorted(present - expected.keys()):
            problems.append(f"unexpected file {name}")
        for name, digest in sorted(expected.items()):
            file = path / name
            if not file.is_file():
                problems.append(f"missing file {name}")
            elif sha256_file(file) != digest:
                problems.append(f"SHA-256 mismatch in {name}")
        return VersionInfo(version, path, not problems, checksum, created_at, metadata, tuple(problems))
