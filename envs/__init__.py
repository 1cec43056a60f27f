"""Gymnasium environments for verifiable math and code, with their pure task generators and verifiers.

Importing this package registers every id in ``verifarm.envs.catalog.ENV_IDS`` with Gymnasium.
"""

from verifarm.envs.base import Task, TaskFamily, Verdict
from verifarm.envs.catalog import ENV_IDS, get_family, register_all

register_all()

__all__ = ["ENV_IDS", "Task", "TaskFamily", "Verdict", "get_family"]
