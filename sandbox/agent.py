"""The agent inside a warm sandbox (a docker container or a bwrap sandbox): runs one program at a time,
unprivileged, then wipes every trace.

Standard library only; bind-mounted read-only with `supervisor.py`, `workdir.py` and `zygote.py` at
/opt/verifarm and started as the sandbox's pid 1 (root, few capabilities). It listens on a unix socket in
a folder only root can enter, so the programs it runs (as the sandbox's own run uid) cannot talk to it.
After each run it kills every process of that uid, reaps them, and empties /work, /tmp, /dev/shm and
System V IPC before answering, so nothing one run writes or starts reaches the next; a process of the run
that is still there afterwards (alive, stopped or a zombie nobody reaped) makes the wipe unclean, and the
host then throws the sandbox away.
"""

import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import time

try:
    from verifarm.sandbox.supervisor import RawOutcome, SpawnRequest, popen_launch, program_env, supervise
    from verifarm.sandbox.workdir import read_outputs, sweep_uid, uid_processes
    from verifarm.sandbox.zygote import Zygote, runs_in_zygote
except ImportError:  # inside a sandbox only this folder exists, mounted at /opt/verifarm
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    # The same modules under their bare names (mypy checks them as verifarm.sandbox.*, above).
    from supervisor import RawOutcome, SpawnRequest, popen_launch, program_env, supervise  # type: ignore[import-not-found, no-redef]
    from workdir import read_outputs, sweep_uid, uid_processes  # type: ignore[import-not-found, no-redef]
    from zygote import Zygote, runs_in_zygote  # type: ignore[import-not-found, no-redef]

SOCKET_PATH = "/run/verifarm/agent.sock"
RUN_DIR = "/work/run"
SCRATCH = ("/tmp", "/dev/shm", "/work")
HEADER = struct.Struct("!Q")
RUN_ENV = program_env(home=RUN_DIR, tmpdir="/tmp")


def receive_message(connection):
    header = _receive_exactly(connection, HEADER.size)
    return json.loads(_receive_exactly(connection, HEADER.unpack(header)[0]))


def send_message(connection, message):
    data = json.dumps(message).encode()
    connection.sendall(HEADER.pack(len(data)) + data)


def _receive_exactly(connection, size):
    chunks, remaining = [], size
    while remaining:
        chunk = connection.recv(min(remaining, 1 << 20))
        if not chunk:
            raise ConnectionError("host closed the connection")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def reap_zombies():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def reap_run_processes(run_uid, attempts=200):
    """Reap what the run left (orphans are ours as pid 1) until no process of run_uid is left in any state:
    killed processes turn into zombies for a moment, and a zombie nobody reaps would count against the
    run uid's RLIMIT_NPROC in every later run. True when none is left."""
    for _ in range(attempts):
        reap_zombies()
        if not uid_processes(run_uid, include_zombies=True):
            return True
        time.sleep(0.001)
    return False


def empty_folder(folder):
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path, ignore_errors=True)
        else:
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def ipc_in_use():
    for kind in ("shm", "msg", "sem"):
        try:
            with open(f"/proc/sysvipc/{kind}") as handle:
                if len(handle.read().splitlines()) > 1:
                    return True
        except OSError:
            pass
    return False


def wipe(run_uid):
    """Leave the sandbox as it started; False when something could not be removed."""
    clean = sweep_uid(run_uid)
    clean = reap_run_processes(run_uid) and clean
    for folder in SCRATCH:
        if os.path.isdir(folder):
            empty_folder(folder)
    if ipc_in_use():
        subprocess.run(["ipcrm", "--all"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        clean = clean and not ipc_in_use()
    leftovers = [folder for folder in SCRATCH if os.path.isdir(folder) and os.listdir(folder)]
    return clean and not leftovers


def handle(request, zygote, run_uid):
    os.mkdir(RUN_DIR, 0o700)
    for name, hex_data in request["files"].items():
        target = os.path.join(RUN_DIR, name)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as handle:
            handle.write(bytes.fromhex(hex_data))
        os.chmod(target, 0o755)
    for folder, _, names in os.walk(RUN_DIR):
        os.chown(folder, run_uid, run_uid)
        for name in names:
            os.chown(os.path.join(folder, name), run_uid, run_uid)
    spawn = SpawnRequest(**request["spawn"])
    spawn.stdin = bytes.fromhex(request["stdin"])
    spawn.cwd, spawn.uid, spawn.gid = RUN_DIR, run_uid, run_uid
    spawn.env = dict(RUN_ENV)
    launch = zygote.launch if zygote is not None and runs_in_zygote(spawn.argv) else popen_launch
    raw = supervise(spawn, launch)
    sweep_uid(run_uid)  # stop daemons before reading outputs, so none can swap a file underneath us
    outputs = read_outputs(RUN_DIR, tuple(request["outputs"]), spawn.file_size_bytes)
    return raw, outputs


# The capabilities the agent keeps (warm_pool.AGENT_CAPABILITIES): chown, dac_override, fowner, kill,
# setgid, setuid. CAP_SETPCAP is what lets the agent narrow the bounding set; it gives that up right after.
KEPT_CAPABILITIES = (0, 1, 3, 5, 6, 7)
CAP_SETPCAP = 8
PR_CAPBSET_DROP, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL = 24, 47, 4
CAPABILITY_VERSION_3 = 0x20080522


def narrow_capabilities():
    """Where the agent holds CAP_SETPCAP (a bwrap sandbox: bubblewrap leaves the bounding set full), drop
    every capability it does not keep from the bounding set, then CAP_SETPCAP itself, so the sandbox ends
    as a docker container starts: nothing beyond those six, for the agent or anything it starts."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    header = (ctypes.c_uint32 * 2)(CAPABILITY_VERSION_3, 0)
    data = (ctypes.c_uint32 * 6)()  # two (effective, permitted, inheritable) words
    if libc.capget(header, data) != 0 or not data[0] & (1 << CAP_SETPCAP):
        return
    with open("/proc/sys/kernel/cap_last_cap") as handle:
        last = int(handle.read())
    for capability in range(last + 1):
        if capability not in KEPT_CAPABILITIES and capability != CAP_SETPCAP:
            libc.prctl(PR_CAPBSET_DROP, capability, 0, 0, 0)
    libc.prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    libc.prctl(PR_CAPBSET_DROP, CAP_SETPCAP, 0, 0, 0)
    data[0] &= ~(1 << CAP_SETPCAP)  # effective
    data[1] &= ~(1 << CAP_SETPCAP)  # permitted
    data[2] = data[5] = 0  # inheritable: root keeps its capabilities across exec without them
    if libc.capset(header, data) != 0:
        raise OSError(ctypes.get_errno(), "could not drop CAP_SETPCAP")


def serve(run_uid):
    """Serve runs as run_uid: a host uid reserved for this sandbox alone, so RLIMIT_NPROC (counted per uid
    across the whole host) and the kill(-1) sweep never involve another sandbox's or the host's processes."""
    os.umask(0o077)
    if os.path.exists(SOCKET_PATH):
        os.unlink(SOCKET_PATH)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(SOCKET_PATH)
    listener.listen(1)
    wipe(run_uid)
    zygote = Zygote(RUN_DIR, RUN_ENV)
    while True:
        connection, _ = listener.accept()
        with connection:
            try:
                request = receive_message(connection)
            except (ConnectionError, ValueError):
                continue
            if not zygote.alive():
                zygote = Zygote(RUN_DIR, RUN_ENV)
            try:
                raw, outputs = handle(request, zygote, run_uid)
                reply = {"raw": raw.to_wire(), "files": {k: v.hex() for k, v in outputs.items()}}
            except Exception as error:  # the agent's own failure: an infra error, never the program's
                reply = {"error": f"{type(error).__name__}: {error}"}
            reply["clean"] = wipe(run_uid)
            try:
                send_message(connection, reply)
            except OSError:
                pass


def decode_reply(reply):
    return RawOutcome.from_wire(reply["raw"]), {k: bytes.fromhex(v) for k, v in reply.get("files", {}).items()}


if __name__ == "__main__":
    narrow_capabilities()
    serve(int(sys.argv[1]))
