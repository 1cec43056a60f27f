"""The docker backend: a warm pool (warm_pool.py) of containers with no network, a read-only root, cgroup
limits and tmpfs scratch folders.

Each container runs `agent.py` as pid 1 under the syscall filter bwrap sandboxes get too (seccomp.py:
Docker's default profile, and ptrace may not attach) and `no-new-privileges`; the program runs under
rlimits as a uid reserved for that container, inside the container's cgroup limits (memory re-capped per
run, one core by default).
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from verifarm.sandbox.cgroup import Cgroup
from verifarm.sandbox.image import ensure_image
from verifarm.sandbox.languages import host_system_paths
from verifarm.sandbox.seccomp import docker_profile
from verifarm.sandbox.supervisor import SANDBOX_PATH
from verifarm.sandbox.warm_pool import (
    AGENT_CAPABILITIES,
    AGENT_COMMAND,
    SANDBOX_SOURCE,
    AgentSocket,
    WarmPoolBackend,
    WarmSandbox,
)
from verifarm.sandbox.workdir import WORK_INODES, RunIdentity, acquire_identity, state_root

LABEL = "verifarm.sandbox"
FALLBACK_RUN_UID = 65534  # when we are not root and hold no uid slots (docker group access): nobody


@dataclass(frozen=True)
class DockerConfig:
    pool_size: int = field(default_factory=lambda: max(2, os.cpu_count() or 2))
    memory_bytes: int = 2 * 1024 * 1024 * 1024  # cgroup cap of one container, over all its processes
    pids: int = 256
    cpus: float = 1.0
    work_bytes: int = 64 * 1024 * 1024  # tmpfs sizes of /work and /tmp
    image: str | None = None  # None: the locally built image (see image.py)
    mount_host_usr: bool = True  # the local image has no /usr of its own
    start_timeout: float = 30.0

    def __post_init__(self) -> None:
        if self.pool_size < 1:
            raise ValueError(f"DockerConfig.pool_size must be at least 1, got {self.pool_size}")
        if self.memory_bytes < 64 * 1024 * 1024 or self.pids < 8 or self.cpus <= 0:
            raise ValueError("DockerConfig needs memory_bytes >= 64 MiB, pids >= 8 and cpus > 0")


class WarmContainer(WarmSandbox):
    """One started container and the socket of its agent."""

    def __init__(self, client, image: str, config: DockerConfig):
        import docker.types  # deferred: the docker client library is heavy, and only this backend needs it

        self.name = f"verifarm-sandbox-{uuid.uuid4().hex[:12]}"
        self.cgroup: Cgroup | None = None
        self.destroyed = False
        # Containers share the host's user namespace: a uid of its own keeps RLIMIT_NPROC per container.
        self.identity = acquire_identity()
        if self.identity.uid is None:
            self.identity = RunIdentity(FALLBACK_RUN_UID, FALLBACK_RUN_UID, None)
        socket_dir = state_root() / "docker" / self.name
        socket_dir.mkdir(parents=True, mode=0o700)
        self.agent = AgentSocket(socket_dir)
        mounts = [
            docker.types.Mount("/opt/verifarm", str(SANDBOX_SOURCE), type="bind", read_only=True),
            docker.types.Mount("/run/verifarm", str(socket_dir), type="bind"),
        ]
        if config.mount_host_usr:
            mounts.append(docker.types.Mount("/usr", "/usr", type="bind", read_only=True))
            for path in host_system_paths():  # the host's toolchains read these too (the JDK's jvm.cfg)
                mounts.append(docker.types.Mount(path, path, type="bind", read_only=True))
        # exec: compiled binaries run from the work dir; nosuid and nodev stay.
        tmpfs_options = f"size={config.work_bytes},nr_inodes={WORK_INODES},mode=755,exec,nosuid,nodev"
        try:
            self.container = client.containers.run(
                image,
                [*AGENT_COMMAND, str(self.identity.uid)],
                name=self.name,
                detach=True,
                user="0:0",
                network_mode="none",
                read_only=True,
                mounts=mounts,
                tmpfs={"/work": tmpfs_options, "/tmp": f"size={config.work_bytes},nr_inodes={WORK_INODES},mode=1777"},
                shm_size=config.work_bytes,
                mem_limit=config.memory_bytes,
                memswap_limit=config.memory_bytes,
                pids_limit=config.pids,
                nano_cpus=int(config.cpus * 1e9),
                cap_drop=["ALL"],
                cap_add=list(AGENT_CAPABILITIES),
                ipc_mode="private",
                security_opt=["no-new-privileges", f"seccomp={docker_profile()}"],
                hostname="sandbox",
                environment={"PATH": SANDBOX_PATH},
                labels={LABEL: "1", f"{LABEL}.owner": f"{socket.gethostname()}:{os.getpid()}"},
            )
        except Exception:
            self.agent.remove()
            self.identity.release()
            raise
        self.wait_for_agent(config.start_timeout, lambda: self.container.logs(tail=20).decode(errors="replace"))
        self.container.reload()
        agent_pid = self.container.attrs["State"]["Pid"]
        self.cgroup = Cgroup.of_process(agent_pid)
        try:  # the agent and its fork server are never the OOM killer's choice; programs always are
            Path(f"/proc/{agent_pid}/oom_score_adj").write_text("-1000")
        except OSError:
            pass

    def alive(self) -> bool:
        return True  # the engine restarts nothing; a dead agent shows as a refused connection

    def destroy(self) -> None:
        if self.destroyed:
            return
        self.destroyed = True
        try:
            self.container.remove(force=True)
        except Exception:  # already gone or the engine is down: nothing left to release
            pass
        self.agent.remove()
        self.identity.release()


def remove_stale_containers(client) -> int:
    """Remove sandbox containers whose owning process on this host is gone (a crashed worker's pool), and
    socket folders left without a container (older than a minute, so none that is starting right now)."""
    removed = 0
    host = socket.gethostname()
    alive = set()
    # The plain listing: inspecting each container (containers.list) fails on one removed meanwhile by
    # another process of this host.
    for container in client.api.containers(all=True, filters={"label": LABEL}):
        name = (container.get("Names") or ["/"])[0].lstrip("/")
        owner_host, _, owner_pid = (container.get("Labels") or {}).get(f"{LABEL}.owner", ":").partition(":")
        if owner_host == host and owner_pid.isdigit() and not Path(f"/proc/{owner_pid}").exists():
            try:
                client.api.remove_container(container["Id"], force=True)
                removed += 1
                continue
            except Exception:  # removed concurrently by another process: fine
                pass
        alive.add(name)
    sockets = state_root() / "docker"
    for folder in sockets.iterdir() if sockets.is_dir() else ():
        try:
            if folder.name not in alive and time.time() - folder.stat().st_mtime > 60:
                (folder / "agent.sock").unlink(missing_ok=True)
                folder.rmdir()
        except OSError:
            pass
    return removed


class DockerBackend(WarmPoolBackend):
    name = "docker"

    def __init__(self, config: DockerConfig | None = None):
        import docker  # deferred: the docker client library is heavy, and only this backend needs it

        self.config = config or DockerConfig()
        super().__init__(self.config.pool_size, self.config.memory_bytes)
        self.client = docker.from_env()
        remove_stale_containers(self.client)
        self.image = self.config.image or ensure_image(self.client)[0]

    @classmethod
    def probe(cls) -> str | None:
        try:
            import docker  # deferred: the docker client library is heavy, and only this backend needs it

            client = docker.from_env(timeout=10)
            client.ping()
            ensure_image(client)
        except Exception as error:  # any failure here means: docker does not work on this machine
            return f"docker engine not usable: {error}"
        return None

    def _start_sandbox(self) -> WarmContainer:
        return WarmContainer(self.client, self.image, self.config)
