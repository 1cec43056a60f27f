"""Fixtures for the sandbox tests: every backend that works here, and a scan for leftover processes."""

from __future__ import annotations

import os
import secrets
import time

import pytest

from verifarm.sandbox.selection import BACKEND_NAMES, close_backends, probe_backend


def _backend_params():
    params = []
    for name in BACKEND_NAMES:
        reason = probe_backend(name)
        marks = [pytest.mark.skip(reason=f"{name} backend unavailable: {reason}")] if reason else []
        if name == "docker":
            marks.append(pytest.mark.docker)
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.fixture(params=_backend_params())
def backend(request) -> str:
    return request.param


@pytest.fixture(scope="session", autouse=True)
def _close_backends_at_end():
    yield
    close_backends()


@pytest.fixture
def token() -> str:
    """A unique name fragment: processes whose command line carries it belong to this test."""
    return "vfh" + secrets.token_hex(6)


def processes_with(token: str) -> list[int]:
    """Live (non-zombie) processes anywhere on the host, containers included, whose command line has token."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read()
            with open(f"/proc/{entry}/stat", "rb") as handle:
                state = handle.read().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if token.encode() in cmdline and state not in (b"Z", b"X"):
            found.append(int(entry))
    return found


@pytest.fixture
def nothing_left():
    """Call with the test's token: fails if any process of the run is still alive a moment later."""
    return _assert_nothing_left


def _assert_nothing_left(token: str) -> None:
    deadline = time.monotonic() + 3
    while processes_with(token) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert processes_with(token) == [], f"processes of the run outlived it: {processes_with(token)}"
