"""The socket the HTTP API listens on, bound before anything else starts: a busy port is a sentence."""

from __future__ import annotations

import socket

from feeds.errors import ConfigError


def listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port for the API; a busy port or a foreign address is a sentence."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        listener = socket.socket(family, kind, proto)
    except OSError as exc:
        raise _cannot_listen(host, port, exc) from None
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(2048)
    except OSError as exc:
        listener.close()
        raise _cannot_listen(host, port, exc) from None
    return listener


def base_url(host: str, port: int) -> str:
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _cannot_listen(host: str, port: int, exc: OSError) -> ConfigError:
    return ConfigError(
        f"The API cannot listen on {host}:{port} ({exc.strerror or exc}); accepted: a free port "
        "in --port (0 picks one) on an address of this host in --host."
    )
