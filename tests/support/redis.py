"""A private ``redis-server`` on a free port that a test may pause, kill and restart (redis-py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

from services.stack.processes import ManagedProcess, free_port, redis_server_argv
from tests.support.binaries import require_binary


@dataclass
class RedisServer:
    """A throw-away cache Redis on 127.0.0.1:``port``, writing nothing to disk."""

    port: int
    log_dir: Path
    extra_args: tuple[str, ...] = ()
    proc: ManagedProcess | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, timeout: float = 2.0) -> redis.Redis:
        """A redis-py client of this server (the caller closes it, or lets it be collected)."""
        return redis.Redis(
            host="127.0.0.1", port=self.port, socket_timeout=timeout, socket_connect_timeout=timeout
        )

    def start(self) -> RedisServer:
        """Start (or restart) the server on the same port and wait until it answers PING."""
        if self.proc is not None and self.proc.alive:
            return self
        binary = require_binary("redis-server", "apt-get install redis-server")
        self.proc = ManagedProcess(
            argv=redis_server_argv(self.port, *self.extra_args, binary=binary),
            log_path=self.log_dir / f"redis-{self.port}.log",
            ready_check=self.ping,
            ready_timeout=10,
            name=f"redis-{self.port}",
        ).start()
        return self

    def ping(self) -> bool:
        """True when the server answers PING within half a second (False while it is paused)."""
        try:
            with self.client(timeout=0.5) as client:
                return bool(client.ping())
        except redis.RedisError:
            return False

    def command(self, *args: str) -> Any:
        """Run one command and return redis-py's reply (``DBSIZE`` gives an int, ``INFO`` a dict)."""
        with self.client() as client:
            return client.execute_command(*args)

    def kill(self) -> None:
        """Kill the server (SIGKILL): connected clients see the connection drop."""
        if self.proc is not None:
            self.proc.kill()

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()


def launch_redis(log_dir: Path, *extra_args: str) -> RedisServer:
    """Start a private ``redis-server`` on a free port (the caller stops it)."""
    return RedisServer(port=free_port(), log_dir=log_dir, extra_args=extra_args).start()
