"""Separate network hosts on one machine: a network namespace per host, all wired to one bridge.

The bridge lives in a namespace of its own (the "switch"), so nothing is added to the root namespace: no link, no
address, no route. Hosts take addresses from 198.18.0.0/15, the range set aside for benchmarking networks, on links
that exist only inside the namespaces made here; deleting the namespaces removes every link with them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SUBNET_PREFIX = "198.18.0"
SUBNET_BITS = 24


class HostsUnavailable(RuntimeError):
    """This machine cannot make network namespaces here (not root, no `ip`, or no permission)."""


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")


def _link_up(namespace: str, link: str, bridge_port: bool = False) -> bool:
    """Whether `link` in `namespace` has carrier (and, for a bridge's port, forwards)."""
    shown = subprocess.run(
        ["ip", "-n", namespace, "-d", "-o", "link", "show", link], capture_output=True, text=True, timeout=30
    ).stdout
    return "state UP" in shown and (not bridge_port or "bridge_slave state forwarding" in shown)


def namespaces_unavailable() -> str | None:
    """Why namespaces cannot be made here, or None when they can (checked by making and deleting one)."""
    if os.geteuid() != 0:
        return "network namespaces need root (the test hosts are made with `ip netns`)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"vf-probe-{uuid.uuid4().hex[:8]}"
    done = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        return f"`ip netns add` is refused here: {done.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30)
    return None


@dataclass
class Host:
    name: str
    namespace: str
    address: str
    processes: list[subprocess.Popen] = field(default_factory=list)

    def command(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside this host's network namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def run(self, argv: Sequence[str], **kwargs) -> subprocess.CompletedProcess:
        kwargs.setdefault("capture_output", True)
        kwargs.setdefault("text", True)
        kwargs.setdefault("timeout", 180)
        return subprocess.run(self.command(argv), **kwargs)

    def start(self, argv: Sequence[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
        """A long-running process on this host, in its own process group (so a test can kill all of it)."""
        with open(log, "ab") as output:
            process = subprocess.Popen(
                self.command(argv),
                env=env,
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.processes.append(process)
        return process

    def stop_processes(self, timeout: float = 15.0) -> None:
        for process in self.processes:
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
            _signal_group(process, signal.SIGKILL)  # whatever is left of the group (pool children)
            if process.poll() is None:
                process.wait(10)
        self.processes.clear()


def _signal_group(process: subprocess.Popen, signum: int) -> None:
    try:
        os.killpg(process.pid, signum)
    except (ProcessLookupError, PermissionError):
        pass


class TestNetwork:
    """Hosts on one switch; `close()` stops their processes and deletes every namespace, whatever happened."""

    __test__ = False  # not a pytest test class

    def __init__(self, names: Sequence[str]):
        self.tag = uuid.uuid4().hex[:6]
        self.switch = f"vf-{self.tag}-switch"
        self.hosts: dict[str, Host] = {}
        self._namespaces: list[str] = []
        try:
            self._add_namespace(self.switch)
            _ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.switch, "link", "set", "br0", "up")
            for index, name in enumerate(names, start=1):
                self._add_host(name, f"{SUBNET_PREFIX}.{index}")
        except BaseException:
            self.close()
            raise

    def _add_namespace(self, namespace: str) -> None:
        _ip("netns", "add", namespace)
        self._namespaces.append(namespace)
        _ip("-n", namespace, "link", "set", "lo", "up")

    def _add_host(self, name: str, address: str) -> None:
        namespace = f"vf-{self.tag}-{name}"
        self._add_namespace(namespace)
        port = self.port_of(name)
        # Made inside the switch's namespace, its peer moved straight into the host's: never in the root one.
        _ip("-n", self.switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        _ip("-n", self.switch, "link", "set", port, "master", "br0", "up")
        _ip("-n", namespace, "addr", "add", f"{address}/{SUBNET_BITS}", "dev", "eth0")
        _ip("-n", namespace, "link", "set", "eth0", "up")
        self.hosts[name] = Host(name, namespace, address)

    @staticmethod
    def port_of(name: str) -> str:
        return f"p-{name}"[:15]  # interface names are at most 15 characters

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def cut(self, name: str) -> None:
        """Unplug a host's cable at the switch: its packets go nowhere until `restore`."""
        _ip("-n", self.switch, "link", "set", self.port_of(name), "down")

    def restore(self, name: str, timeout: float = 10.0) -> None:
        """Plug the cable back in, and return once packets pass: the port and the host's end up again and the
        bridge forwarding on the port (a packet sent right after `link set up` can find it not yet there)."""
        port = self.port_of(name)
        _ip("-n", self.switch, "link", "set", port, "up")
        deadline = time.monotonic() + timeout
        while not (_link_up(self.switch, port, bridge_port=True) and _link_up(self.hosts[name].namespace, "eth0")):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}'s link did not come back up within {timeout:.0f} s")
            time.sleep(0.02)  # the kernel offers no event to wait on from here; the wait is bounded
        # A packet sent while unplugged left a failed neighbour entry, which refuses connections ("no route to
        # host") until it expires: forget it, as the host would after a fresh carrier.
        _ip("-n", self.hosts[name].namespace, "neigh", "flush", "dev", "eth0")

    def close(self) -> None:
        for host in self.hosts.values():
            host.stop_processes()
        for namespace in reversed(self._namespaces):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, timeout=30)
        self._namespaces.clear()
