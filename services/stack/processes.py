"""Child processes of the local stack (and of the integration fixtures): start, wait, stop.

Every child runs in its own session (process group), so stopping it reaches the processes it
forks too (the workers of ``bentoml serve``, Streamlit's server). Output goes to a log file
whose tail is shown when a child dies or never becomes ready.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from services.stack.settings import inherited_environment

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The checkout root: working directory of every child (``services``, ``ui`` import from here)."""


class ProcessFailedError(RuntimeError):
    """A child exited, or did not become ready in time; the message carries its log tail."""


_HANDED_OUT: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that nothing listens on right now (bind to port 0).

    Never the same port twice in one process: callers often pick several ports before starting
    anything, and the kernel may hand out a port again while its first taker has not bound it.
    """
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free TCP port that this process has not handed out already")


def redis_server_argv(port: int, *extra: str, binary: str = "redis-server") -> list[str]:
    """Command line of a throw-away cache Redis on 127.0.0.1:``port`` that writes nothing to disk."""
    return [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", *extra]


def streamlit_argv(port: int, host: str = "127.0.0.1", *extra: str) -> list[str]:
    """Command line of the Streamlit UI (``ui/app.py``) as users should see it: headless, no
    developer menu, no Python tracebacks in the page."""
    return [
        sys.executable, "-m", "streamlit", "run", str(REPO_ROOT / "ui" / "app.py"),
        "--server.port", str(port), "--server.address", host, "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer", "--client.showErrorDetails", "none",
        *extra,
    ]  # fmt: skip


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on ``port`` of ``host`` now.

    SO_REUSEADDR as servers set it: connections lingering in TIME_WAIT do not count.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def http_status(url: str, timeout: float = 1.0) -> int | None:
    """The HTTP status a GET of ``url`` answers, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as e:
        return int(e.code)
    except (urllib.error.URLError, OSError):
        return None


@dataclass
class ManagedProcess:
    """A child process with its own environment and log file, waited for, and always stopped.

    ``launch()`` starts ``argv`` in a new session; ``wait_ready()`` polls ``ready_url`` until
    it answers one of ``ready_statuses`` (or ``ready_check()`` until it returns True), failing
    early, with the log tail, if the child exits; ``start()`` does both. ``env`` is added to
    the inherited environment.
    """

    argv: list[str]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    ready_url: str | None = None
    ready_check: Callable[[], bool] | None = None
    ready_statuses: tuple[int, ...] = (200,)
    ready_timeout: float = 60.0
    cwd: Path = REPO_ROOT
    name: str = ""
    process: subprocess.Popen[bytes] | None = None

    def __post_init__(self) -> None:
        if not self.name:
            self.name = Path(self.argv[0]).name

    def launch(self) -> ManagedProcess:
        """Start the child (not waiting for readiness); a running child is left alone."""
        if self.alive:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env={**inherited_environment(), **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        logger.debug("started %s (pid %d): %s", self.name, self.process.pid, " ".join(self.argv))
        return self

    def start(self) -> ManagedProcess:
        """Launch the child and wait until it is ready; raise ProcessFailedError otherwise."""
        self.launch()
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float | None = None) -> None:
        """Poll the readiness probe until it passes; fail with the log tail (no probe: return)."""
        if self.ready_url is None and self.ready_check is None:
            return
        limit = timeout if timeout is not None else self.ready_timeout
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise ProcessFailedError(
                    f"{self.name} exited with code {self.process.returncode} before it was ready "
                    f"(log {self.log_path}):\n{self.log_tail()}"
                )
            if self._probe():
                return
            time.sleep(0.1)
        raise ProcessFailedError(
            f"{self.name}: {self.ready_url or 'readiness check'} not ready after {limit:g} s "
            f"(log {self.log_path}):\n{self.log_tail()}"
        )

    def probe(self) -> bool:
        """Whether the readiness probe passes now (True when there is none and the child runs)."""
        if self.ready_url is None and self.ready_check is None:
            return self.alive
        return self._probe()

    def _probe(self) -> bool:
        if self.ready_check is not None:
            return self.ready_check()
        assert self.ready_url is not None
        return http_status(self.ready_url, timeout=0.5) in self.ready_statuses

    @property
    def alive(self) -> bool:
        """Whether the child is running."""
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        """Process id of the child (also its process group id), if started."""
        return self.process.pid if self.process is not None else None

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the child's log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    def descendants(self) -> list[psutil.Process]:
        """The child and everything it forked, as now running (empty once it has exited)."""
        if self.process is None:
            return []
        try:
            root = psutil.Process(self.process.pid)
            return [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 10.0, tree: list[psutil.Process] | None = None) -> None:
        """SIGTERM the child and everything it forked; SIGKILL what is left after ``timeout``.

        Some children leave the process group (circus, behind ``bentoml serve``, starts each
        worker in a session of its own), so the process tree is captured before signalling
        and every member is signalled and waited for, not only the group. ``tree`` is such a
        capture made earlier (by :func:`stop_all`).
        """
        proc = self.process
        if proc is None:
            return
        if tree is None:
            tree = self.descendants()
        _signal_all(proc.pid, tree, signal.SIGTERM)
        _gone, left = psutil.wait_procs(tree, timeout=timeout)
        if left:
            logger.warning(
                "%s: %d process(es) ignored SIGTERM for %g s; killing them", self.name, len(left), timeout
            )
            _signal_all(proc.pid, left, signal.SIGKILL)
            psutil.wait_procs(left, timeout=timeout)
        _signal_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the child and everything it forked at once (a crash, not a shutdown)."""
        proc = self.process
        if proc is None:
            return
        tree = self.descendants()
        _signal_all(proc.pid, tree, signal.SIGKILL)
        psutil.wait_procs(tree, timeout=10)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _signal_all(pgid: int, tree: list[psutil.Process], sig: int) -> None:
    _signal_group(pgid, sig)
    for member in tree:
        # psutil refuses to signal a pid that has been reused by another process.
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            member.send_signal(sig)


def group_alive(pgid: int) -> bool:
    """Whether any process of process group ``pgid`` still exists."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_all(processes: Iterable[ManagedProcess], timeout: float | None = None) -> None:
    """Launch every process at once, then wait for each to be ready (slow starters overlap).

    On any failure every process of the batch is stopped and the first error re-raised.
    """
    batch = list(processes)
    try:
        for proc in batch:
            proc.launch()
        for proc in batch:
            proc.wait_ready(timeout)
    except BaseException:
        stop_all(batch)
        raise


def stop_all(processes: Iterable[ManagedProcess], timeout: float = 10.0) -> None:
    """Stop processes in reverse start order, all at once: SIGTERM every tree, then wait for each."""
    batch = [p for p in processes if p.process is not None]
    trees = {id(p): p.descendants() for p in batch}
    for proc in reversed(batch):
        _signal_all(proc.process.pid, trees[id(proc)], signal.SIGTERM)  # type: ignore[union-attr]
    for proc in reversed(batch):
        proc.stop(timeout, trees[id(proc)])
