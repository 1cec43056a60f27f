"""`process_alive`: a running process is alive; an exited one and an unreaped zombie are not."""

from __future__ import annotations

import os
import subprocess
import sys

from verifarm.processes import process_alive


def test_a_running_process_is_alive_and_a_reaped_one_is_not():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    assert process_alive(child.pid)
    child.communicate(b"")
    assert not process_alive(child.pid)


def test_a_killed_unreaped_child_counts_as_dead():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    os.kill(child.pid, 9)
    # Wait until the kernel has made it a zombie without reaping it (waitid with WNOWAIT leaves it unreaped).
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)
    os.kill(child.pid, 0)  # still "exists" for kill(0): the case the check must see through
    assert not process_alive(child.pid)
    child.wait()


def test_this_process_is_alive():
    assert process_alive(os.getpid())
