"""Is the farm's broker answering, and does its store accept us? Checked by commands when they start.

A worker pool that reports ready while its store refuses every write, or a campaign stored while its broker is
down, fails later and far from the cause; these checks fail at once, in one line that names the service.
"""

from __future__ import annotations

from pathlib import Path

from verifarm.redaction import redact_url


class ServiceUnavailable(ConnectionError):
    """A broker or store that is unreachable or refuses the credentials; the message says which and what to do."""


def _first_line(error: BaseException) -> str:
    text = str(getattr(error, "orig", None) or error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def check_broker(url: str, timeout_s: float = 3.0) -> None:
    """Ping the Redis broker; raise ServiceUnavailable if it does not answer or refuses the credentials."""
    import redis

    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s)
        client.ping()
        client.close()
    except redis.AuthenticationError as error:
        raise ServiceUnavailable(
            f"the Redis broker at {redact_url(url)} refused the credentials ({_first_line(error)}): "
            "correct the password in VERIFARM_REDIS_URL"
        ) from None
    except (redis.RedisError, OSError, ValueError) as error:
        raise ServiceUnavailable(
            f"cannot reach the Redis broker at {redact_url(url)} ({_first_line(error)}): start "
            "Redis, or correct VERIFARM_REDIS_URL (unset, the CLI runs a private one)"
        ) from None


_CREDENTIAL_WORDS = (
    "password authentication failed",
    "authentication failed",
    "role",
    "permission denied",
    "no password supplied",
    "access denied",
)


def check_store(url: str, timeout_s: float = 5.0) -> None:
    """Open the rollout store and run a trivial query; raise ServiceUnavailable if it cannot be used."""
    import sqlalchemy
    from sqlalchemy.engine import make_url

    try:
        parsed = make_url(url)
    except sqlalchemy.exc.ArgumentError as error:
        raise ServiceUnavailable(
            f"the store URL {redact_url(url)} is not an SQLAlchemy URL ({error}): use "
            "sqlite:///path.db or postgresql://user@host/db"
        ) from None
    connect_args = {"connect_timeout": int(max(1, timeout_s))} if parsed.get_backend_name() == "postgresql" else {}
    try:
        engine = sqlalchemy.create_engine(parsed, connect_args=connect_args)
    except (sqlalchemy.exc.ArgumentError, sqlalchemy.exc.NoSuchModuleError, ImportError) as error:
        raise ServiceUnavailable(
            f"cannot use the store URL {redact_url(url)} ({_first_line(error)}): use "
            "sqlite:///path.db or postgresql://user@host/db"
        ) from None
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT 1"))
    except sqlalchemy.exc.DBAPIError as error:
        reason = _first_line(error)
        if any(word in reason.lower() for word in _CREDENTIAL_WORDS):
            raise ServiceUnavailable(
                f"the store at {redact_url(url)} refused the credentials ({reason}): correct the "
                "user or password in VERIFARM_DATABASE_URL"
            ) from None
        raise ServiceUnavailable(
            f"cannot open the store at {redact_url(url)} ({reason}): start the database, or correct VERIFARM_DATABASE_URL"
        ) from None
    finally:
        engine.dispose()


def check_registry(url: str, cache_dir: Path, timeout_s: float = 5.0) -> None:
    """Ask the trainer's registry server for its index; raise ServiceUnavailable if it does not answer."""
    # deferred: the registry client loads FastAPI, which only a farm with a registry server needs
    from verifarm.policy.remote_registry import RegistryUnreachable, RemoteRegistry

    try:
        RemoteRegistry(url, cache_dir, timeout_s=timeout_s).published_versions()
    except RegistryUnreachable as error:
        raise ServiceUnavailable(
            f"{error}: start `verifarm policy serve-registry` on the trainer host, or correct VERIFARM_REGISTRY_URL"
        ) from None
