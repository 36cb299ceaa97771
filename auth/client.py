"""The calling client's address, for the limits that count per client (SMS codes, operator sign-ins).

The auth middleware sets it once per request from the connection and the trusted proxy's header
(CLIENT_IP_HEADER); the sign-in use cases read it, the console's sign-in included, without every
caller having to pass it on.
"""

from __future__ import annotations

from contextvars import ContextVar

# Outside a request (a CLI command, a test calling a service) every caller is one client: "unknown".
_client: ContextVar[str] = ContextVar("client", default="unknown")

set_client = _client.set
reset_client = _client.reset


def current_client() -> str:
    return _client.get()
