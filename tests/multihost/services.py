"""The farm's shared services, each started inside the `services` test host: a private Redis and a private
PostgreSQL cluster, both requiring credentials and TLS (a self-signed certificate made with openssl)."""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from tests.multihost.hosts import Host

REDIS_PORT = 6379
POSTGRES_PORT = 5432
FARM_USER = "verifarm"


def make_certificate(folder: Path, address: str) -> tuple[Path, Path]:
    """A self-signed certificate for `address` (its own CA): (certificate, key)."""
    cert, key = folder / "server.crt", folder / "server.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=verifarm-services",
         "-addext", f"subjectAltName=IP:{address}"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return cert, key


def wait_for(check, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start within {timeout}s:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.2)


@dataclass
class RedisService:
    """redis-server on the services host: TLS only, the default user off, one ACL user with a password."""

    host: Host
    folder: Path
    cert: Path
    key: Path
    password: str = ""

    def __post_init__(self) -> None:
        self.password = self.password or secrets.token_urlsafe(18)
        self.config = self.folder / "redis.conf"
        self.config.write_text(
            "\n".join(
                [
                    f"bind {self.host.address}",
                    "port 0",  # no plaintext port at all
                    f"tls-port {REDIS_PORT}",
                    f"tls-cert-file {self.cert}",
                    f"tls-key-file {self.key}",
                    f"tls-ca-cert-file {self.cert}",
                    "tls-auth-clients no",
                    f"dir {self.folder}",
                    "appendonly yes",
                    "appendfsync always",  # a restart "with its data" keeps every acknowledged write
                    'save ""',
                    "maxmemory-policy noeviction",
                    "user default off",
                    f"user {FARM_USER} on >{self.password} ~* &* +@all",
                    "",
                ]
            )
        )
        self.log = self.folder / "redis.log"
        self.process = None

    def url(self, password: str | None = None) -> str:
        secret = quote(self.password if password is None else password, safe="")
        return (
            f"rediss://{FARM_USER}:{secret}@{self.host.address}:{REDIS_PORT}/0"
            f"?ssl_cert_reqs=required&ssl_ca_certs={self.cert}"
        )

    def _answers(self) -> bool:
        done = self.host.run(
            ["redis-cli", "--tls", "--cacert", str(self.cert), "-h", self.host.address, "-p", str(REDIS_PORT),
             "--user", FARM_USER, "--pass", self.password, "--no-auth-warning", "ping"],
            timeout=10,
        )  # fmt: skip
        return done.stdout.strip() == "PONG"

    def start(self) -> None:
        self.process = self.host.start(["redis-server", str(self.config)], self.log)
        wait_for(self._answers, 30, "Redis", self.log)

    def stop(self) -> None:
        """A clean shutdown (SIGTERM): the append-only file is flushed, the data kept for the next start."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


@dataclass
class PostgresService:
    """A private PostgreSQL cluster on the services host, run as the postgres user (it refuses root): only TLS
    connections from the test subnet with a SCRAM password; the admin uses the trusted local socket."""

    host: Host
    cert: Path
    key: Path
    password: str = ""

    def __post_init__(self) -> None:
        self.password = self.password or secrets.token_urlsafe(18)
        # Outside pytest's root-only temp tree: the postgres user must reach it.
        self.folder = Path(tempfile.mkdtemp(prefix="vf-multihost-pg-"))
        self.data = self.folder / "data"
        self.sockets = self.folder / "sockets"
        self.sockets.mkdir()
        self.log = self.folder / "postgres.log"
        shutil.copy(self.cert, self.folder / "server.crt")
        shutil.copy(self.key, self.folder / "server.key")
        os.chmod(self.folder / "server.key", 0o600)
        owner = pwd.getpwnam("postgres")
        for path in (self.folder, self.sockets, self.folder / "server.crt", self.folder / "server.key"):
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def _as_postgres(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
        done = self.host.run(["runuser", "-u", "postgres", "--", *argv], timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stderr.strip() or done.stdout.strip()}")
        return done

    def url(self, password: str | None = None) -> str:
        secret = quote(self.password if password is None else password, safe="")
        return (
            f"postgresql+psycopg2://{FARM_USER}:{secret}@{self.host.address}:{POSTGRES_PORT}/verifarm?sslmode=require"
        )

    def create(self) -> None:
        self._as_postgres(["initdb", "-D", str(self.data), "-U", "postgres", "--auth-local=trust", "--no-sync"])
        (self.data / "pg_hba.conf").write_text(
            "local all postgres trust\n"
            "hostssl all all 198.18.0.0/15 scram-sha-256\n"  # no plain `host` line: TLS or nothing
        )
        with open(self.data / "postgresql.conf", "a") as conf:
            conf.write(
                f"listen_addresses = '{self.host.address}'\nport = {POSTGRES_PORT}\n"
                f"unix_socket_directories = '{self.sockets}'\nssl = on\n"
                f"ssl_cert_file = '{self.folder / 'server.crt'}'\nssl_key_file = '{self.folder / 'server.key'}'\n"
                "password_encryption = 'scram-sha-256'\nfsync = off\nmax_connections = 100\n"
            )
        self.start()
        self._as_postgres(
            ["psql", "-h", str(self.sockets), "-p", str(POSTGRES_PORT), "-U", "postgres", "-v", "ON_ERROR_STOP=1",
             "-c", f"CREATE ROLE {FARM_USER} LOGIN PASSWORD '{self.password}'",
             "-c", f"CREATE DATABASE verifarm OWNER {FARM_USER}"]
        )  # fmt: skip

    def start(self) -> None:
        self._as_postgres(["pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start"])

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._as_postgres(["pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop"])

    def remove(self) -> None:
        try:
            self.stop()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
