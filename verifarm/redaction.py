"""URLs fit to show: the one function every message, log line and page uses to name a service's URL.

A farm's URLs carry credentials (`redis://user:password@host`, `postgresql://user:password@host/db`, a token in a
query string); shown anywhere, they are shown through `redact_url`.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit

# Query parameters whose values are secrets (`?password=`, `?token=`, `?api_key=`): shown as ***.
_SECRET_PARAMETER_WORDS = ("pass", "secret", "token", "key", "auth", "credential")


def redact_url(url: str | None) -> str:
    """`url` with any password and secret-looking query value replaced by `***` (the user name, host, path and
    other parameters stay, so the message still says which service it means); `-` for no URL."""
    if not url:
        return "-"
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return "(unparseable URL hidden)"
    # Edited in place rather than rebuilt: rebuilding drops the empty authority of `sqlite:////path`.
    shown = url.split("#", 1)[0]
    if "@" in parts.netloc:
        userinfo, host = parts.netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        shown = shown.replace(f"//{parts.netloc}", f"//{user}:***@{host}" if has_password else f"//{user}@{host}", 1)
    else:  # no `//` authority (a mistyped URL such as `user:password@host/db`): hide all after the first ':'
        head, at, tail = shown.split("?", 1)[0].rpartition("@")
        if at and ":" in head:
            shown = head.split(":", 1)[0] + ":***@" + tail + shown[len(head) + 1 + len(tail) :]
    if parts.query:
        hidden = [(name, "***" if _is_secret(name) else value) for name, value in query]
        shown = shown.split("?", 1)[0] + "?" + urlencode(hidden, safe="*/:")
    return shown


def _is_secret(parameter: str) -> bool:
    return any(word in parameter.lower() for word in _SECRET_PARAMETER_WORDS)
