"""The docker backend: a pool of warm containers (no network, read-only root, cgroup limits, tmpfs work dir).

Each container runs `docker_agent.py` as pid 1; a run is one request over a unix socket, the program runs
as `nobody` under rlimits inside the container's cgroup limits, and the agent wipes every process and file
of the run before it answers. A container that misbehaves or reports an unclean wipe is thrown away.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from verifarm.sandbox.backend import Backend
from verifarm.sandbox.cgroup import ContainerMemory
from verifarm.sandbox.docker_agent import decode_reply, receive_message, send_message
from verifarm.sandbox.outcome import classify, infra_error
from verifarm.sandbox.program import ExecResult, Limits, Program
from verifarm.sandbox.supervisor import SpawnRequest
from verifarm.sandbox.workdir import WORK_INODES, RunIdentity, acquire_identity, state_root

LABEL = "verifarm.sandbox"
FALLBACK_RUN_UID = 65534  # when we are not root and hold no uid slots (docker group access): nobody
SANDBOX_SOURCE = Path(__file__).parent
AGENT_MEMORY = 96 * 1024 * 1024  # the agent, its fork server and the idle child, on top of the run
AGENT_CAPABILITIES = ["SETUID", "SETGID", "KILL", "CHOWN", "DAC_OVERRIDE", "FOWNER"]


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


class WarmContainer:
    """One started container and the socket of its agent."""

    def __init__(self, client, image: str, config: DockerConfig):
        import docker.types

        self.name = f"verifarm-sandbox-{uuid.uuid4().hex[:12]}"
        # Containers share the host's user namespace: a uid of its own keeps RLIMIT_NPROC per container.
        self.identity = acquire_identity()
        if self.identity.uid is None:
            self.identity = RunIdentity(FALLBACK_RUN_UID, FALLBACK_RUN_UID, None)
        self.socket_dir = state_root() / "docker" / self.name
        self.socket_dir.mkdir(parents=True, mode=0o700)
        self.socket_path = self.socket_dir / "agent.sock"
        mounts = [docker.types.Mount("/opt/verifarm", str(SANDBOX_SOURCE), type="bind", read_only=True),
                  docker.types.Mount("/run/verifarm", str(self.socket_dir), type="bind")]
        if config.mount_host_usr:
            mounts.append(docker.types.Mount("/usr", "/usr", type="bind", read_only=True))
        # exec: compiled binaries run from the work dir; nosuid and nodev stay.
        tmpfs_options = f"size={config.work_bytes},nr_inodes={WORK_INODES},mode=755,exec,nosuid,nodev"
        try:
            self.container = client.containers.run(
                image, ["python3", "-I", "-S", "/opt/verifarm/docker_agent.py", str(self.identity.uid)],
                name=self.name, detach=True,
                user="0:0", network_mode="none", read_only=True, mounts=mounts,
                tmpfs={"/work": tmpfs_options, "/tmp": f"size={config.work_bytes},nr_inodes={WORK_INODES},mode=1777"},
                shm_size=config.work_bytes, mem_limit=config.memory_bytes, memswap_limit=config.memory_bytes,
                pids_limit=config.pids, nano_cpus=int(config.cpus * 1e9), cap_drop=["ALL"],
                cap_add=AGENT_CAPABILITIES, security_opt=["no-new-privileges"], ipc_mode="private",
                hostname="sandbox", environment={"PATH": "/usr/local/bin:/usr/bin:/bin"},
                labels={LABEL: "1", f"{LABEL}.owner": f"{socket.gethostname()}:{os.getpid()}"})
        except Exception:
            self.identity.release()
            raise
        deadline = time.monotonic() + config.start_timeout
        self.memory: ContainerMemory | None = None
        while not self._agent_listening():
            if time.monotonic() > deadline:
                logs = self.container.logs(tail=20).decode(errors="replace")
                self.destroy()
                raise RuntimeError(f"sandbox container {self.name} did not start its agent: {logs}")
            time.sleep(0.01)
        self.container.reload()
        agent_pid = self.container.attrs["State"]["Pid"]
        self.memory = ContainerMemory.of_process(agent_pid)
        try:  # the agent and its fork server are never the OOM killer's choice; programs always are
            Path(f"/proc/{agent_pid}/oom_score_adj").write_text("-1000")
        except OSError:
            pass

    def _agent_listening(self) -> bool:
        """An empty connection: the agent accepts it and goes back to waiting."""
        if not self.socket_path.exists():
            return False
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect(str(self.socket_path))
                return True
            except OSError:
                return False

    def request(self, message: dict, timeout: float) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(timeout)
            connection.connect(str(self.socket_path))
            send_message(connection, message)
            return receive_message(connection)

    def destroy(self) -> None:
        try:
            self.container.remove(force=True)
        except Exception:  # already gone or the engine is down: nothing left to release
            pass
        try:
            self.socket_path.unlink(missing_ok=True)
            self.socket_dir.rmdir()
        except OSError:
            pass
        self.identity.release()


def remove_stale_containers(client) -> int:
    """Remove sandbox containers whose owning process on this host is gone (a crashed worker's pool), and
    socket folders left without a container (older than a minute, so none that is starting right now)."""
    removed = 0
    host = socket.gethostname()
    alive = set()
    for container in client.containers.list(all=True, filters={"label": LABEL}):
        owner_host, _, owner_pid = container.labels.get(f"{LABEL}.owner", ":").partition(":")
        if owner_host == host and owner_pid.isdigit() and not Path(f"/proc/{owner_pid}").exists():
            try:
                container.remove(force=True)
                removed += 1
                continue
            except Exception:  # removed concurrently by another process: fine
                pass
        alive.add(container.name)
    sockets = state_root() / "docker"
    for folder in sockets.iterdir() if sockets.is_dir() else ():
        try:
            if folder.name not in alive and time.time() - folder.stat().st_mtime > 60:
                (folder / "agent.sock").unlink(missing_ok=True)
                folder.rmdir()
        except OSError:
            pass
    return removed


class DockerBackend(Backend):
    name = "docker"

    def __init__(self, config: DockerConfig | None = None):
        import docker

        from verifarm.sandbox.image import ensure_image

        self.config = config or DockerConfig()
        self.client = docker.from_env()
        remove_stale_containers(self.client)
        self.image = self.config.image or ensure_image(self.client)[0]
        self._idle: queue.LifoQueue[WarmContainer] = queue.LifoQueue()
        self._all: dict[str, WarmContainer] = {}  # every live container, idle or running a program
        self._started = 0
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def probe(cls) -> str | None:
        try:
            import docker

            from verifarm.sandbox.image import ensure_image

            client = docker.from_env(timeout=10)
            client.ping()
            ensure_image(client)
        except Exception as error:  # any failure here means: docker does not work on this machine
            return f"docker engine not usable: {error}"
        return None

    def _take(self) -> WarmContainer:
        with self._lock:
            if self._closed:
                raise RuntimeError("the docker backend is closed")
            if self._idle.empty() and self._started < self.config.pool_size:
                self._started += 1
                grow = True
            else:
                grow = False
        if grow:
            try:
                container = WarmContainer(self.client, self.image, self.config)
                with self._lock:
                    self._all[container.name] = container
                return container
            except Exception:
                with self._lock:
                    self._started -= 1
                raise
        return self._idle.get()

    def _give_back(self, container: WarmContainer, healthy: bool) -> None:
        if healthy and not self._closed:
            self._idle.put(container)
            return
        container.destroy()
        with self._lock:
            self._started -= 1
            self._all.pop(container.name, None)

    def warm_up(self) -> None:
        """Start the whole pool now instead of on first use."""
        taken = [self._take() for _ in range(self.config.pool_size)]
        for container in taken:
            self._give_back(container, True)

    def run(self, program: Program, limits: Limits) -> ExecResult:
        started = time.monotonic()
        spawn = SpawnRequest(argv=list(program.command), cwd="", env={}, stdin=b"", cpu_seconds=limits.cpu_seconds,
                             wall_seconds=limits.wall_seconds, memory_bytes=limits.memory_bytes,
                             max_processes=limits.max_processes, output_bytes=limits.output_bytes,
                             file_size_bytes=limits.file_size_bytes, open_files=limits.open_files)
        wire_spawn = asdict(spawn)
        wire_spawn["stdin"] = ""
        message = {"spawn": wire_spawn, "stdin": program.stdin.hex(), "outputs": list(program.outputs),
                   "files": {name: data.hex() for name, data in program.file_bytes().items()}}
        # Everything that can fail on the program's content happens above, before a container is taken:
        # a container taken must always be given back.
        try:
            container = self._take()
        except Exception as error:
            return infra_error(self.name, f"no sandbox container: {error}", time.monotonic() - started)
        healthy = False
        try:
            capped = container.memory is not None and container.memory.cap(
                min(limits.memory_bytes + AGENT_MEMORY, self.config.memory_bytes))
            oom_before = container.memory.oom_kills() if capped else 0
            reply = container.request(message, timeout=limits.wall_seconds + 30)
            healthy = bool(reply.get("clean"))
            if "error" in reply:
                return infra_error(self.name, f"sandbox agent failed: {reply['error']}", time.monotonic() - started)
            raw, outputs = decode_reply(reply)
            raw.memory_exceeded = capped and container.memory.oom_kills() > oom_before
        except (OSError, ValueError, KeyError) as error:
            return infra_error(self.name, f"sandbox container failed: {error}", time.monotonic() - started)
        finally:
            self._give_back(container, healthy)
        notes = [] if healthy else ["container discarded after an unclean wipe"]
        if limits.network:
            notes.append("network was requested but sandbox containers never have one")
        if not capped:
            notes.append(f"memory capped per process and at {self.config.memory_bytes} bytes per container")
        note = "; ".join(notes)
        return classify(raw, limits, self.name, outputs, note=note)

    def container_names(self) -> list[str]:
        """Names of the pool's live containers (idle or running a program)."""
        with self._lock:
            return list(self._all)

    def close(self) -> None:
        """Remove every container of the pool, including ones still running a program."""
        with self._lock:
            self._closed = True
            containers = list(self._all.values())
            self._all.clear()
        for container in containers:
            container.destroy()
