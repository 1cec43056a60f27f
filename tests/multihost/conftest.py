"""A farm on four separate network hosts of this machine: `services` (Redis and PostgreSQL), `worker-a`,
`worker-b` and `trainer`. Each host runs the real `verifarm` CLI with only VERIFARM_* settings pointing at
`services`, and a checkpoint folder of its own. Built once per test module (it takes a while on 2 cores)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.multihost.hosts import Host, TestNetwork, namespaces_unavailable
from tests.multihost.services import PostgresService, RedisService, make_certificate

HOST_NAMES = ("services", "worker-a", "worker-b", "trainer")
WORKER_HOSTS = ("worker-a", "worker-b")
REGISTRY_PORT = 8270


def _verifarm_command() -> list[str]:
    """The installed `verifarm` script of this interpreter (or the same entry point through `python -m`)."""
    script = Path(sys.executable).with_name("verifarm")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "verifarm.cli"]


VERIFARM = _verifarm_command()


def _missing_tools() -> str | None:
    for tool in ("redis-server", "redis-cli", "initdb", "pg_ctl", "psql", "openssl", "runuser"):
        if shutil.which(tool) is None:
            return f"`{tool}` is not installed (the services host runs Redis and PostgreSQL itself)"
    try:
        import pwd

        pwd.getpwnam("postgres")
    except KeyError:
        return "no `postgres` user to run the private PostgreSQL cluster as (PostgreSQL refuses root)"
    return None


def wait_until(condition: Callable[[], bool], timeout: float, what: str, logs: Callable[[], str] = str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}\n{logs()}")
        time.sleep(0.3)


@dataclass
class HostFarm:
    network: TestNetwork
    redis: RedisService
    postgres: PostgresService
    root: Path

    def host(self, name: str) -> Host:
        return self.network[name]

    def home(self, host: str) -> Path:
        return self.root / host

    def registry_url(self) -> str:
        return f"http://{self.host('trainer').address}:{REGISTRY_PORT}"

    def env(self, host: str, **overrides: str) -> dict[str, str]:
        """The VERIFARM_* settings of one host: the shared services, and a home and checkpoint folder of its own."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("VERIFARM_")}
        home = self.home(host)
        env.update(
            {
                "VERIFARM_HOME": str(home),
                "VERIFARM_CHECKPOINT_DIR": str(home / "checkpoints"),
                "VERIFARM_REDIS_URL": self.redis.url(),
                "VERIFARM_DATABASE_URL": self.postgres.url(),
                "VERIFARM_SANDBOX_BACKEND": "process",
                # A batch held by a worker that fell off the network is handed on within the test.
                "VERIFARM_FARM_VISIBILITY_TIMEOUT_S": "20",
                "VERIFARM_FARM_RESTORE_INTERVAL_S": "2",
                "VERIFARM_FARM_RECONCILE_INTERVAL_S": "3",
            }
        )
        if host != "trainer":  # every other host fetches checkpoints from the trainer's registry
            env["VERIFARM_REGISTRY_URL"] = self.registry_url()
        env.update(overrides)
        return env

    def cli(self, host: str, *args: str, timeout: float = 180, **overrides: str) -> subprocess.CompletedProcess:
        return self.host(host).run([*VERIFARM, *args], env=self.env(host, **overrides), timeout=timeout)

    def start(self, host: str, log_name: str, *args: str) -> subprocess.Popen:
        return self.host(host).start([*VERIFARM, *args], self.home(host) / log_name, env=self.env(host))

    def logs(self, tail: int | None = 2500) -> str:
        """Every host's logs (the last `tail` characters of each; all of it for None)."""
        parts = []
        for log in sorted(self.root.glob("*/*.log")) + sorted(self.root.glob("*/trainer/*.log")):
            text = log.read_text(errors="replace")
            parts.append(f"--- {log.relative_to(self.root)}\n{text if tail is None else text[-tail:]}")
        return "\n".join(parts)

    def json(self, host: str, *args: str) -> object:
        done = self.cli(host, *args, "--json")
        assert done.returncode == 0, f"verifarm {' '.join(args)} on {host}: {done.stderr}\n{self.logs()}"
        return json.loads(done.stdout)

    def status(self, campaign_id: str) -> dict:
        return self.json("trainer", "campaign", "status", campaign_id)

    def wait_complete(self, campaign_id: str, timeout: float) -> dict:
        state: dict = {}

        def done() -> bool:
            state.update(self.status(campaign_id))
            return state["done"] >= state["expected"]

        wait_until(done, timeout, f"campaign {campaign_id} to complete", self.logs)
        return state

    def records(self, campaign_id: str) -> list[dict]:
        listed = self.json("trainer", "data", "ls", "--campaign", campaign_id, "--all", "--limit", "1000000")
        return listed["records"]

    def workers_answering(self) -> set[str]:
        rows = self.json("trainer", "workers", "ls", "--timeout", "1")
        return {row["worker"].split("@")[0] for row in rows}


@pytest.fixture(scope="module")
def network() -> Iterator[TestNetwork]:
    reason = namespaces_unavailable() or _missing_tools()
    if reason:
        pytest.skip(f"the multi-host farm tests need separate network hosts: {reason}")
    made = TestNetwork(HOST_NAMES)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="module")
def host_farm(network: TestNetwork, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostFarm]:
    root = tmp_path_factory.mktemp("hosts")
    services = network["services"]
    cert, key = make_certificate(root, services.address)
    (root / "redis-data").mkdir()
    redis = RedisService(services, root / "redis-data", cert, key)
    postgres = PostgresService(services, cert, key)
    farm = HostFarm(network, redis, postgres, root)
    for name in HOST_NAMES:
        (root / name).mkdir()
    try:
        redis.start()
        postgres.create()
        yield farm
    finally:
        for host in network.hosts.values():
            host.stop_processes()
        postgres.remove()  # a daemon outside the hosts' process lists, stopped before its namespace goes
