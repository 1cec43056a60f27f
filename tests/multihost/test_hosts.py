"""The test hosts themselves: linked to each other only, nothing left in the root namespace, a cable that can
be pulled and plugged back, and a clear reason where they cannot be made."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.multihost.hosts import Host, TestNetwork, namespaces_unavailable

REPO = Path(__file__).resolve().parents[2]
FETCH = "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=3).read().decode())"


def root_namespace_traces(network: TestNetwork) -> list[str]:
    """Lines of the root namespace's links, addresses and routes that name anything of `network`."""
    marks = ["198.18.", network.tag, "br0", *(TestNetwork.port_of(name) for name in network.hosts)]
    lines = []
    for args in (["-o", "link"], ["-o", "addr"], ["route"]):
        shown = subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout
        lines += [line for line in shown.splitlines() if any(mark in line for mark in marks)]
    return lines


def fetch(host: Host, url: str) -> subprocess.CompletedProcess:
    return host.run([sys.executable, "-c", FETCH, url], timeout=30)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="`unshare` (util-linux) is not installed")
def test_without_root_the_reason_is_named() -> None:
    """In a user namespace (no root there) the check says why instead of letting the tests fail or vanish."""
    probe = "from tests.multihost.hosts import namespaces_unavailable; print(namespaces_unavailable())"
    done = subprocess.run(["unshare", "--user", sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO)
    if done.returncode != 0 and "unshare failed" in done.stderr:
        pytest.skip(f"user namespaces are unavailable here: {done.stderr.strip()}")
    assert done.stdout.strip() == "network namespaces need root (the test hosts are made with `ip netns`)"


def test_hosts_reach_each_other_only_through_their_switch(tmp_path: Path) -> None:
    reason = namespaces_unavailable()
    if reason:
        pytest.skip(f"the test hosts need network namespaces: {reason}")
    network = TestNetwork(["alpha", "beta"])
    try:
        assert root_namespace_traces(network) == []  # no link, address or route added to the root namespace
        alpha, beta = network["alpha"], network["beta"]
        assert (alpha.address, beta.address) == ("198.18.0.1", "198.18.0.2")
        (tmp_path / "hello.txt").write_text("hello from beta")
        server = [sys.executable, "-m", "http.server", "8000", "--bind", beta.address, "--directory", str(tmp_path)]
        beta.start(server, tmp_path / "server.log")
        url = f"http://{beta.address}:8000/hello.txt"
        for _ in range(50):  # the server binds within a second or two
            reached = fetch(alpha, url)
            if reached.returncode == 0:
                break
        assert reached.stdout.strip() == "hello from beta", reached.stderr
        network.cut("alpha")
        assert fetch(alpha, url).returncode != 0
        network.restore("alpha")
        again = fetch(alpha, url)
        assert again.stdout.strip() == "hello from beta", again.stderr
        namespaces = [host.namespace for host in network.hosts.values()] + [network.switch]
    finally:
        network.close()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not any(namespace in listed for namespace in namespaces)
    assert root_namespace_traces(network) == []
