"""A checkpoint registry shipped over HTTP, for farms whose machines share no disk.

The trainer's host serves its registry folder read-only (`registry_app`, run by `verifarm policy serve-registry`):
the list of good versions and drafters, each one's manifest, and the files the manifest names. A worker's
`RemoteRegistry` fetches a version into a local cache, checks every file's SHA-256 against the manifest and the
manifest's content checksum, and only then renames it into its cache, a plain `CheckpointRegistry` it loads from.
A corrupt or partial transfer is refused and fetched again; while a newer version cannot be fetched the worker
keeps sampling with the one it holds.

Routes: `GET /index` -> {"versions": [good versions], "drafters": [versions with an intact drafter]};
`GET /{versions|drafters}/{n}/manifest.json`; `GET /{versions|drafters}/{n}/files/{name}`.
"""

from __future__ import annotations

import errno
import hashlib
import http.client
import json
import logging
import os
import shutil
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, Response

from verifarm.policy.registry import (
    HASH_CHUNK,
    MANIFEST_NAME,
    TEMP_PREFIX,
    CheckpointRegistry,
    CorruptCheckpoint,
    DrafterInfo,
    LoadedPolicy,
    NoCheckpoint,
    VersionInfo,
    content_checksum,
)
from verifarm.redaction import redact_url

logger = logging.getLogger(__name__)

KINDS = ("versions", "drafters")


class RegistryUnreachable(ConnectionError):
    """The registry server did not answer (down, or the network between is cut)."""


# ----- the server ------------------------------------------------------------------------------------------
def registry_app(registry: CheckpointRegistry) -> FastAPI:
    """Read-only routes over `registry`: only intact versions and drafters are listed or served, and only the
    files their manifests name (no path from a request ever reaches the file system unchecked)."""
    app = FastAPI(title="verifarm checkpoint registry", openapi_url=None, docs_url=None, redoc_url=None)

    def folder_of(kind: str, version: int) -> Path:
        if kind not in KINDS or version < 1:
            raise HTTPException(404, "no such checkpoint")
        if kind == "versions":
            if version not in registry.published_versions():
                raise HTTPException(404, f"no version {version}")
            info = registry.inspect(version)
        else:
            if version not in registry.drafter_versions():
                raise HTTPException(404, f"no drafter of version {version}")
            info = registry.verify_folder(version, registry.drafter_path(version))
        if not info.ok:  # a corrupt version is never shipped: workers keep the one they hold
            raise HTTPException(409, f"{kind[:-1]} {version} is corrupt on the server")
        return info.path

    @app.get("/index")
    def index() -> dict[str, list[int]]:
        versions = [v for v in registry.published_versions() if registry.inspect(v).ok]
        drafters = [v for v in registry.drafter_versions() if registry.verify_folder(v, registry.drafter_path(v)).ok]
        return {"versions": versions, "drafters": drafters}

    @app.get("/{kind}/{version}/manifest.json")
    def manifest(kind: str, version: int) -> Response:
        return FileResponse(folder_of(kind, version) / MANIFEST_NAME, media_type="application/json")

    @app.get("/{kind}/{version}/files/{name:path}")
    def file(kind: str, version: int, name: str) -> Response:
        folder = folder_of(kind, version)
        listed = json.loads((folder / MANIFEST_NAME).read_text())["files"]
        if name not in listed:
            raise HTTPException(404, f"{name!r} is not a file of {kind[:-1]} {version}")
        return FileResponse(folder / name, media_type="application/octet-stream")

    return app


# ----- the client ------------------------------------------------------------------------------------------
class RemoteRegistry:
    """A registry read from `base_url` and cached under `cache_dir`; the same reading interface as
    `CheckpointRegistry` (what workers and campaign checks use), never a publisher."""

    def __init__(self, base_url: str, cache_dir: Path | str, *, attempts: int = 3, timeout_s: float = 30.0):
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"the registry URL must start with http:// or https://, got {redact_url(base_url)}")
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        self.base_url = base_url.rstrip("/")
        self.shown_url = redact_url(self.base_url)  # for messages: a URL may carry credentials
        self.cache = CheckpointRegistry(cache_dir)
        self.root = self.cache.root
        self.attempts = attempts
        self.timeout_s = timeout_s
        self.transfers_refused = 0  # transfers that failed their checksums or ended early

    # ----- HTTP --------------------------------------------------------------------------------------------
    def _get(self, path: str):
        url = f"{self.base_url}/{path}"
        try:
            return urllib.request.urlopen(url, timeout=self.timeout_s)
        except urllib.error.HTTPError as error:
            if error.code == 404:
                raise KeyError(f"the registry at {self.shown_url} has no {path}") from None
            if error.code == 409:
                raise CorruptCheckpoint(0, Path(path), [f"the server refuses {path}: it is corrupt there"]) from None
            raise RegistryUnreachable(
                f"the registry at {self.shown_url} answered HTTP {error.code} for {path}"
            ) from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise RegistryUnreachable(f"cannot reach the checkpoint registry at {self.shown_url}: {reason}") from None

    def _index(self) -> dict[str, list[int]]:
        with self._get("index") as reply:
            try:
                index = json.loads(reply.read())
                return {kind: sorted(int(v) for v in index[kind]) for kind in KINDS}
            except (ValueError, KeyError, TypeError) as error:
                raise RegistryUnreachable(
                    f"the registry at {self.shown_url} sent an unreadable index: {error}"
                ) from None

    # ----- fetching ----------------------------------------------------------------------------------------
    def _download(self, kind: str, version: int, staging: Path) -> str:
        """Fetch one checkpoint's files into `staging`, checking each as it arrives; returns the problems
        (empty when every byte matches the manifest)."""
        quoted = urllib.parse.quote
        with self._get(f"{kind}/{version}/manifest.json") as reply:
            manifest_bytes = reply.read()
        try:
            manifest = json.loads(manifest_bytes)
            files: dict[str, str] = dict(manifest["files"])
            checksum = str(manifest["checksum"])
        except (ValueError, KeyError, TypeError) as error:
            return f"manifest unreadable: {error}"
        if manifest.get("version") != version:
            return f"the manifest names version {manifest.get('version')!r}, not {version}"
        if content_checksum(files) != checksum:
            return "manifest checksum does not match its file list"
        for name, expected in sorted(files.items()):
            if Path(name).is_absolute() or ".." in Path(name).parts:
                return f"the manifest names a file outside its folder: {name!r}"
            target = staging / name
            target.parent.mkdir(parents=True, exist_ok=True)
            digest = hashlib.sha256()
            with self._get(f"{kind}/{version}/files/{quoted(name)}") as reply, open(target, "wb") as out:
                for chunk in iter(lambda: reply.read(HASH_CHUNK), b""):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != expected:
                return f"SHA-256 mismatch in {name} (a corrupt or partial transfer)"
        (staging / MANIFEST_NAME).write_bytes(manifest_bytes)
        return ""

    def _fetch(self, kind: str, version: int, target: Path, wanted_checksum: str | None = None) -> Path:
        """`target` holding an intact copy of the server's checkpoint, fetched again after a bad transfer."""
        if target.is_dir():
            held = CheckpointRegistry.verify_folder(version, target)
            if held.ok and (wanted_checksum is None or held.checksum == wanted_checksum):
                return target
        problems: list[str] = []
        for attempt in range(1, self.attempts + 1):
            self.root.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=self.root))
            try:
                try:
                    problem = self._download(kind, version, staging)
                # A connection cut mid-file (IncompleteRead) is a partial transfer: refused like a corrupt one.
                except (OSError, http.client.HTTPException, RegistryUnreachable) as error:
                    problem = f"transfer failed: {error}"
                if not problem:
                    self._move_into_place(staging, target, version)
                    logger.info("fetched %s %d from %s into %s", kind[:-1], version, self.shown_url, target)
                    return target
            finally:
                shutil.rmtree(staging, ignore_errors=True)
            self.transfers_refused += 1
            problems.append(f"attempt {attempt}: {problem}")
            logger.warning("refused %s %d from %s: %s", kind[:-1], version, self.shown_url, problem)
            if attempt < self.attempts:
                time.sleep(min(0.5 * attempt, 5.0))
        raise CorruptCheckpoint(version, Path(f"{self.shown_url}/{kind}/{version}"), problems)

    @staticmethod
    def _move_into_place(staging: Path, target: Path, version: int) -> None:
        """Rename the verified `staging` into `target`. Processes of one host share the cache: when another one
        put the same checkpoint there first, its copy stays (a reader may be loading it) and ours is dropped."""
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.rename(staging, target)
            return
        except OSError as error:
            if error.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        fetched = json.loads((staging / MANIFEST_NAME).read_text())["checksum"]
        held = CheckpointRegistry.verify_folder(version, target)
        if held.ok and held.checksum == fetched:
            return
        # A corrupt copy, or a drafter replaced on the server: set the old one aside, then swap.
        retired = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=staging.parent))
        os.rename(target, retired / "old")
        os.rename(staging, target)
        shutil.rmtree(retired, ignore_errors=True)

    def fetch(self, version: int) -> Path:
        """The cached folder of `version`, fetched and verified if not held intact already."""
        return self._fetch("versions", version, self.cache.path(version))

    # ----- the reading interface of CheckpointRegistry -----------------------------------------------------
    def published_versions(self) -> list[int]:
        """The good versions the server lists (it ships no corrupt one)."""
        return self._index()["versions"]

    def latest_published(self) -> int | None:
        published = self.published_versions()
        return published[-1] if published else None

    def path(self, version: int) -> Path:
        return self.cache.path(version)

    def inspect(self, version: int) -> VersionInfo:
        """The verified local copy of `version` (fetched first if needed)."""
        try:
            self.fetch(version)
        except CorruptCheckpoint as error:
            return VersionInfo(version, self.cache.path(version), False, None, None, {}, tuple(error.problems))
        return self.cache.inspect(version)

    def latest_version(self) -> int | None:
        """The newest version the server lists that arrives intact; None if there is none."""
        for version in reversed(self.published_versions()):
            if self.inspect(version).ok:
                return version
        return None

    def newer_than(self, current: int | None) -> int | None:
        """The newest version above `current` fetched intact, or None: a server out of reach or a transfer that
        keeps failing leaves the caller on the version it holds (logged, never raised)."""
        try:
            published = self.published_versions()
        except RegistryUnreachable as error:
            logger.warning("%s; keeping policy v%s", error, current)
            return None
        for version in reversed([v for v in published if current is None or v > current]):
            try:
                self.fetch(version)
                return version
            except (CorruptCheckpoint, RegistryUnreachable) as error:
                logger.warning("cannot fetch policy v%d (%s); keeping v%s", version, error, current)
        return None

    def load(self, version: int | None = None, *, device: str | None = None, dtype: Any = None) -> LoadedPolicy:
        """Load a fetched and verified version; `None` is the newest the server ships, or, when the server is
        out of reach, the newest intact one already cached."""
        if version is None:
            try:
                version = self.latest_version()
            except RegistryUnreachable as error:
                version = self.cache.latest_version()
                if version is None:
                    raise NoCheckpoint(f"{error}, and no version is cached in {self.root}") from None
                logger.warning("%s; loading cached policy v%d", error, version)
            if version is None:
                raise NoCheckpoint(f"the registry at {self.shown_url} ships no good policy version yet")
        else:
            self.fetch(version)
        return self.cache.load(version, device=device, dtype=dtype)

    # ----- drafters ----------------------------------------------------------------------------------------
    def drafter_versions(self) -> list[int]:
        try:
            return self._index()["drafters"]
        except RegistryUnreachable:
            return self.cache.drafter_versions()

    def _fetch_drafter(self, version: int) -> None:
        # A drafter may be replaced on the server: compare the manifest's checksum, not only presence.
        with self._get(f"drafters/{version}/manifest.json") as reply:
            checksum = json.loads(reply.read()).get("checksum")
        self._fetch("drafters", version, self.cache.drafter_path(version), wanted_checksum=checksum)

    def drafter_for(self, version: int) -> DrafterInfo | None:
        for source in reversed([v for v in self.drafter_versions() if v <= version]):
            try:
                self._fetch_drafter(source)
            except (CorruptCheckpoint, RegistryUnreachable, KeyError) as error:
                logger.warning("cannot fetch the drafter of v%d (%s)", source, error)
                continue
            info = self.cache.verify_folder(source, self.cache.drafter_path(source))
            return DrafterInfo(version, source, info.path, info.ok, info.metadata, info.problems)
        return None

    def load_drafter(self, version: int, *, device: str | None = None, dtype: Any = None) -> tuple[Any, DrafterInfo]:
        info = self.drafter_for(version)
        if info is None:
            raise NoCheckpoint(f"no drafter for policy v{version} at {self.shown_url}")
        drafter, _ = self.cache.load_drafter(info.distilled_from, device=device, dtype=dtype)
        return drafter, info


def open_registry(checkpoint_dir: Path, registry_url: str | None) -> CheckpointRegistry | RemoteRegistry:
    """The registry a reader of these settings uses: the trainer's over HTTP, cached in `checkpoint_dir`, when
    `registry_url` is set; the folder itself otherwise."""
    if registry_url:
        return RemoteRegistry(registry_url, checkpoint_dir)
    return CheckpointRegistry(checkpoint_dir)
