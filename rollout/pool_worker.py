"""The process a `WorkerPool` starts: a rollout worker of the farm its parent resolved.

`python -m verifarm.rollout.pool_worker CONCURRENCY NAME LOGLEVEL` reads the FarmConfig as JSON from stdin and
hands it to the Celery app's config, so the worker reads no VERIFARM_* settings of its own.
"""

from __future__ import annotations

import sys

from verifarm.rollout.app import run_worker
from verifarm.rollout.config import FarmConfig


def main(argv: list[str]) -> None:
    concurrency, name, loglevel = argv
    farm = FarmConfig.model_validate_json(sys.stdin.buffer.read())
    run_worker(farm, int(concurrency), name, loglevel)


if __name__ == "__main__":
    main(sys.argv[1:])
