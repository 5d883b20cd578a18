"""The router's cache through a Redis that wants a password over TLS (as managed Redis does).

A real ``redis-server`` with ``requirepass`` and only a TLS port, a certificate signed by a CA
made here with ``openssl``. The router connects with ``rediss://``, the password from its own
setting (the chart's Secret) and the CA file: predictions land in that Redis and come back as
hits. With a wrong password it fails open: every prediction is still answered, uncached, and
the log says why without ever printing a password.
"""

from __future__ import annotations

import secrets
import socket
import ssl
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.stack.processes import ManagedProcess, free_port, redis_server_argv
from tests.support.binaries import require_binary, unavailable
from tests.support.waiting import wait_until
from winemeup.schema import SCHEMA

pytestmark = pytest.mark.integration

EXAMPLE = SCHEMA.example()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_certificates(directory: Path) -> dict[str, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 and localhost, signed by it."""
    require_binary("openssl", "apt-get install openssl")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=winemeup-test-ca",
             "-keyout", "ca.key", "-out", "ca.crt", cwd=directory)  # fmt: skip
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
             "-keyout", "server.key", "-out", "server.csr", cwd=directory)  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "2", "-extfile", "san.ext", "-out", "server.crt", cwd=directory)  # fmt: skip
    return {name: directory / f"{name}" for name in ("ca.crt", "server.crt", "server.key")}


def _tls_command(port: int, ca: Path, password: str, *args: str) -> bytes:
    """AUTH, then one command over TLS; the raw reply of that command."""
    context = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=2) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(f"*2\r\n$4\r\nAUTH\r\n${len(password)}\r\n{password}\r\n".encode())
        if not sock.recv(64).startswith(b"+OK"):
            raise ConnectionError("AUTH refused")
        payload = f"*{len(args)}\r\n" + "".join(f"${len(a)}\r\n{a}\r\n" for a in args)
        sock.sendall(payload.encode())
        return sock.recv(65536)


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """redis-server with requirepass, TLS only (its plain port is off)."""
    binary = require_binary("redis-server", "apt-get install redis-server")
    directory = tmp_path_factory.mktemp("redis-tls")
    certs = _make_certificates(directory)
    password = "pw-" + secrets.token_urlsafe(18)
    port = free_port()
    argv = [
        *redis_server_argv(0, binary=binary),
        "--tls-port", str(port),
        "--tls-cert-file", str(certs["server.crt"]),
        "--tls-key-file", str(certs["server.key"]),
        "--tls-ca-cert-file", str(certs["ca.crt"]),
        "--tls-auth-clients", "no",
        "--requirepass", password,
    ]  # fmt: skip

    def answers() -> bool:
        try:
            return _tls_command(port, certs["ca.crt"], password, "PING").startswith(b"+PONG")
        except OSError:
            return False

    proc = ManagedProcess(argv=argv, log_path=directory / "redis.log", ready_check=answers, ready_timeout=15)
    try:
        proc.start()
    except Exception as e:
        proc.stop()
        if "tls" in proc.log_tail().lower() and "not" in proc.log_tail().lower():
            unavailable(f"this redis-server was built without TLS: {e}")
        raise
    try:
        yield {
            "port": port,
            "password": password,
            "ca": certs["ca.crt"],
            "url": f"rediss://127.0.0.1:{port}/0",
        }
    finally:
        proc.stop()


def _log(router: Any) -> str:
    return Path(router.process.log_path).read_text(errors="replace")


def test_router_caches_through_redis_with_password_and_tls(
    tls_redis: dict[str, Any], model_store: Path, router: Callable[..., Any]
) -> None:
    handle = router(
        model_store,
        models=["lightgbm"],
        redis_url=tls_redis["url"],
        redis_password=tls_redis["password"],
        redis_tls_ca_file=str(tls_redis["ca"]),
        redis_timeout_seconds=0.5,
        near_cache_entries=0,  # every hit must come from Redis itself
    )
    handle.wait_ready()
    wine = {"features": {**EXAMPLE, "alcohol": 12.4242}}
    with httpx.Client(base_url=handle.url, headers=handle.headers(), timeout=10) as client:
        first = client.post("/v1/predict", json=wine).json()
        second = client.post("/v1/predict", json=wine).json()
        ready = client.get("/readyz").json()
    assert first["cached"] is False
    assert second["cached"] is True and second["score"] == first["score"]
    assert ready["cache"] == {"backend": "redis", "reachable": True}
    keys = _tls_command(tls_redis["port"], tls_redis["ca"], tls_redis["password"], "KEYS", "wmu:p1:*")
    assert keys.startswith(b"*") and not keys.startswith(b"*0"), keys
    log = _log(handle)
    assert "TLS on, password set" in log
    assert tls_redis["password"] not in log


def test_wrong_password_fails_open_with_a_clear_log_line(
    tls_redis: dict[str, Any], model_store: Path, router: Callable[..., Any]
) -> None:
    wrong = "wrong-" + secrets.token_urlsafe(12)
    handle = router(
        model_store,
        models=["lightgbm"],
        redis_url=tls_redis["url"],
        redis_password=wrong,
        redis_tls_ca_file=str(tls_redis["ca"]),
        redis_timeout_seconds=0.5,
        near_cache_entries=0,
    )
    handle.wait_ready()
    wine = {"features": {**EXAMPLE, "alcohol": 12.5353}}
    with httpx.Client(base_url=handle.url, headers=handle.headers(), timeout=10) as client:
        answers = [client.post("/v1/predict", json=wine) for _ in range(3)]
        assert client.get("/readyz").status_code == 200  # a cache outage never makes a pod unready
    assert all(r.status_code == 200 for r in answers), [r.text for r in answers]
    assert not any(r.json()["cached"] for r in answers)

    def cache_lines() -> list[str]:
        return [x for x in _log(handle).splitlines() if "redis cache" in x and "AuthenticationError" in x]

    wait_until(lambda: bool(cache_lines()), 10, message=lambda: _log(handle)[-2000:])
    assert "serving without the cache" in cache_lines()[0]
    assert "check the Redis password" in cache_lines()[0]
    assert wrong not in _log(handle) and tls_redis["password"] not in _log(handle)
