"""What went wrong on the wire, in words a person can act on: "connection refused", "timed out".

Client libraries wrap the socket's error several layers deep (requests → urllib3 MaxRetryError →
NewConnectionError → ConnectionRefusedError); their outermost class name says nothing. The URL a library puts
in its own message is left out, because only the caller knows which parts of it are safe to show.
"""
from __future__ import annotations

import socket


def connection_problem(error: BaseException) -> str:
    """The innermost cause of a failed connection, e.g. "connection refused", else the error's class name."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, TimeoutError | socket.timeout) or "Timeout" in type(current).__name__:
            return "timed out"
        if isinstance(current, socket.gaierror):
            return "name not resolved"
        if isinstance(current, ConnectionRefusedError):
            return "connection refused"
        if isinstance(current, ConnectionResetError):
            return "connection reset"
        if isinstance(current, OSError) and current.strerror:
            return current.strerror.lower()
        pending.extend(cause for cause in (getattr(current, "reason", None), current.__cause__, current.__context__,
                                           *current.args) if isinstance(cause, BaseException))
    if "RemoteDisconnected" in repr(error) or "ProtocolError" in type(error).__name__:
        return "connection closed by the peer"
    return type(error).__name__
