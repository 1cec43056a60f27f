"""infra/compose.yaml publishes no service that answers without credentials: its Redis command, run here as
written, refuses an anonymous client and admits the farm's ACL user."""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis
import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "infra" / "compose.yaml"


def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def test_unauthenticated_dashboards_are_published_on_loopback_only() -> None:
    for name in ("flower", "prometheus"):
        assert all(str(port).startswith("127.0.0.1:") for port in services()[name]["ports"]), name


def test_the_postgres_service_needs_its_password() -> None:
    assert services()["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${VERIFARM_DB_PASSWORD:?")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_ping(client: redis.Redis, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 15
    while True:
        try:
            client.ping()
            return
        except redis.ConnectionError:
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail("the compose Redis command did not start")
            time.sleep(0.1)


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server is not installed")
def test_the_redis_command_refuses_anonymous_clients(tmp_path: Path) -> None:
    redis_service = services()["redis"]
    assert redis_service["environment"]["VERIFARM_REDIS_PASSWORD"].startswith("${VERIFARM_REDIS_PASSWORD:?")
    shell, flag, script = redis_service["command"]
    assert (shell, flag) == ("sh", "-c")
    port = _free_port()
    # Compose turns `$$` into `$`; the container's port and data folder become private ones here.
    script = script.replace("$$", "$") + f" --port {port} --bind 127.0.0.1 --dir {shlex.quote(str(tmp_path))}"
    env = {**os.environ, "VERIFARM_REDIS_PASSWORD": "compose-test-pw"}
    server = subprocess.Popen(["sh", "-c", script], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        _wait_for_ping(redis.Redis(port=port, username="verifarm", password="compose-test-pw"), server)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port).ping()  # the default user is off
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, username="verifarm", password="wrong").ping()
    finally:
        server.terminate()
        server.wait(10)
