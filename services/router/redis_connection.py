"""Connections to Redis from the router's settings: URL, password, TLS and deadlines."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit


def connect_deadline(timeout_seconds: float, connect_timeout_seconds: float | None, tls: bool) -> float:
    """Seconds a connect may take: ``connect_timeout_seconds`` (else the command deadline), with
    a floor of 0.5 s for TLS, whose handshake to a managed Redis takes a few round trips."""
    connect = connect_timeout_seconds if connect_timeout_seconds is not None else timeout_seconds
    return max(connect, 0.5) if tls else connect


def redis_client(
    url: str,
    timeout_seconds: float,
    *,
    password: str | None = None,
    tls_ca_file: str | None = None,
    max_connections: int = 256,
    connect_timeout_seconds: float | None = None,
) -> Any:
    """A ``redis.asyncio.Redis`` on its own plain connection pool; no retry on timeout.

    A password in the URL wins (redis-py's ``from_url``); otherwise ``password`` is sent with
    AUTH. A TLS handshake to a managed Redis takes a few round trips: the connect gets a floor
    of 0.5 s there (commands keep their own deadline). The plain pool, not the blocking one:
    the blocking pool's condition variable and timeout context cost about 70 µs per command,
    and running out of connections is a cache error like any other.
    """
    import redis.asyncio as redis

    options: dict[str, Any] = {"password": password} if password else {}
    tls = url.startswith("rediss://")
    if tls and tls_ca_file:
        options["ssl_ca_certs"] = tls_ca_file
    pool = redis.ConnectionPool.from_url(
        url,
        max_connections=max_connections,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=connect_deadline(timeout_seconds, connect_timeout_seconds, tls),
        health_check_interval=0,
        **options,
    )
    return redis.Redis(connection_pool=pool, retry_on_timeout=False)


def describe_redis(url: str, password: str | None) -> str:
    """Where a Redis URL points, without its password (for logs)."""
    where = urlsplit(url)
    return (
        f"{where.hostname}:{where.port or 6379} db {where.path.lstrip('/') or '0'} "
        f"(TLS {'on' if url.startswith('rediss://') else 'off'}, "
        f"password {'set' if (password or where.password) else 'none'})"
    )
