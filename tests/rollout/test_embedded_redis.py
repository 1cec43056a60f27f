"""The private Redis of a machine with nothing running: found by other commands, persistent, cleaned up."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import redis

from verifarm.rollout.embedded_redis import EmbeddedRedis, session_broker


def test_queue_survives_a_hard_kill_and_restart(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    url, pid = server.start()
    try:
        redis.Redis.from_url(url).lpush("queue", b"batch-1", b"batch-2")
        os.kill(pid, signal.SIGKILL)  # appendfsync always: an acknowledged write is on disk
        os.waitpid(pid, 0)
        assert server.running_url() is None
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        url, pid = server.start(port=port)
        assert redis.Redis.from_url(url).lrange("queue", 0, -1) == [b"batch-2", b"batch-1"]
    finally:
        server.stop(pid)
    assert server.running_url() is None and not server.state_file.exists()


def test_session_broker_reuses_a_running_server_and_only_stops_its_own(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with session_broker(None, home) as first_url:
        with session_broker(None, home) as second_url:  # a second command finds the first one's server
            assert second_url == first_url
        assert EmbeddedRedis(home / "redis").running_url() == first_url  # still up: not the second's to stop
    assert EmbeddedRedis(home / "redis").running_url() is None
    with session_broker("redis://configured:6379/0", home) as url:  # a configured broker is used as is
        assert url == "redis://configured:6379/0"
    assert not (home / "redis" / "server.json").exists()


def test_stop_recorded_cleans_up_a_leftover(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "redis")
    server.start()
    assert EmbeddedRedis(tmp_path / "redis").stop_recorded()  # e.g. after the starting command crashed
    assert server.running_url() is None
    assert not EmbeddedRedis(tmp_path / "redis").stop_recorded()
