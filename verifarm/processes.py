"""Whether a pid names a running process, as the farm's pid files need to know."""

from __future__ import annotations

import os
from pathlib import Path


def process_alive(pid: int) -> bool:
    """True while `pid` runs. A zombie (killed, not yet reaped by its parent) counts as dead: `kill(pid, 0)` still
    succeeds on it, and a daemon killed with SIGKILL must be startable again before its parent gets round to it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by someone else
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    # The state letter follows the command name in parentheses, which may itself hold spaces or parentheses.
    return stat[stat.rfind(")") + 2 : stat.rfind(")") + 3] not in ("Z", "X")
