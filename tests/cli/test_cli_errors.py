"""Failures no command handled are still one line with an exit status that says whose fault it is."""

from __future__ import annotations

import errno

import redis
import sqlalchemy.exc

from verifarm.cli_errors import BadInput, Failure, describe_failure, one_line


def test_each_kind_of_failure_is_named_with_what_to_do() -> None:
    assert describe_failure(BadInput("bad --limit")) == ("bad --limit", 2)
    assert describe_failure(Failure("the store is down")) == ("the store is down", 1)
    message, code = describe_failure(PermissionError(errno.EACCES, "Permission denied", "/root/out.jsonl"))
    assert code == 1 and message == (
        "Permission denied: /root/out.jsonl: choose a location you may write to, or fix its permissions"
    )
    message, code = describe_failure(redis.ConnectionError("Error 111 connecting to 127.0.0.1:1."))
    assert code == 1 and message.startswith("cannot reach the Redis broker") and "VERIFARM_REDIS_URL" in message
    down = sqlalchemy.exc.OperationalError("SELECT 1", {}, Exception("connection refused\nis the server running?"))
    message, code = describe_failure(down)
    assert code == 1 and "VERIFARM_DATABASE_URL" in message and "\n" not in message
    assert describe_failure(ValueError("difficulty must be >= 1")) == ("difficulty must be >= 1", 2)
    message, code = describe_failure(RuntimeError("boom"))
    assert code == 1 and message.startswith("unexpected RuntimeError: boom") and "--debug" in message


def test_messages_built_over_several_lines_become_one() -> None:
    assert one_line("invalid campaign spec:\n  tasks: must be >= 1\n  envs: empty\n") == (
        "invalid campaign spec: tasks: must be >= 1 envs: empty"
    )
