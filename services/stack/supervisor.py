"""Restarting the local stack's components when they die, with back-off, as the kubelet does.

A component whose process exits is started again after a delay that doubles with each
restart in a row (1 s, 2 s, 4 s ... up to a cap), the way Kubernetes' CrashLoopBackOff
does; the count starts afresh once it has run for a while. Every exit, restart and return
to readiness is logged, which is what ``make run`` shows on its console.

:class:`Backoff` is the pure delay rule; :class:`Supervisor` applies it, one ``tick()`` at a
time, to :class:`~services.stack.processes.ManagedProcess` children.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import psutil

from services.stack.processes import ManagedProcess

logger = logging.getLogger(__name__)

TREE_REFRESH_SECONDS = 5.0
"""How often the process tree of a running component is looked at again."""


@dataclass
class Backoff:
    """Delays between restarts: ``initial`` doubled per restart in a row, at most ``cap``."""

    initial: float = 1.0
    cap: float = 30.0
    reset_after: float = 120.0
    """Seconds a restarted process must run before the next delay is ``initial`` again."""
    restarts_in_row: int = 0

    def next_delay(self) -> float:
        """The delay before the next restart; each call counts one more restart in a row."""
        delay = min(self.initial * 2**self.restarts_in_row, self.cap)
        self.restarts_in_row += 1
        return delay

    def ran_for(self, seconds: float) -> None:
        """A (re)started process has been running ``seconds``: long enough forgives the past."""
        if seconds >= self.reset_after:
            self.restarts_in_row = 0


@dataclass
class _Watch:
    backoff: Backoff
    restart_at: float | None = None
    launched_at: float = 0.0
    restarts: int = 0
    awaiting_ready: bool = False
    tree: list[psutil.Process] = field(default_factory=list)
    tree_seen_at: float = 0.0


class Supervisor:
    """Watches named components; restarts each one that exits, after its back-off delay.

    ``tick()`` never blocks on a component: a restart is a launch, and readiness is probed
    once per tick afterwards. ``on_change`` is called after each restart (to rewrite the
    records of running processes).
    """

    def __init__(
        self,
        processes: Mapping[str, ManagedProcess],
        *,
        initial: float = 1.0,
        cap: float = 30.0,
        reset_after: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[], None] | None = None,
    ) -> None:
        self.processes = processes
        self.clock = clock
        self.on_change = on_change
        now = clock()
        self.watches = {
            name: _Watch(Backoff(initial, cap, reset_after), launched_at=now, tree=proc.descendants())
            for name, proc in processes.items()
        }

    def restarts(self, name: str) -> int:
        """How many times a component was restarted."""
        return self.watches[name].restarts

    def tick(self) -> None:
        """Look at every component once: note exits, restart those whose delay is over."""
        now = self.clock()
        for name, proc in self.processes.items():
            watch = self.watches[name]
            if proc.alive:
                self._running(name, proc, watch, now)
            elif watch.restart_at is None:
                self._exited(name, proc, watch, now)
            elif now >= watch.restart_at:
                self._restart(name, proc, watch, now)

    def _running(self, name: str, proc: ManagedProcess, watch: _Watch, now: float) -> None:
        if watch.awaiting_ready and proc.probe():
            watch.awaiting_ready = False
            watch.tree, watch.tree_seen_at = proc.descendants(), now  # its workers are up now
            logger.info(
                "%s is back: ready %.1f s after restart %d", name, now - watch.launched_at, watch.restarts
            )
        if now - watch.tree_seen_at >= TREE_REFRESH_SECONDS or not watch.tree:
            # Workers fork after the launch and may be replaced: keep the tree to kill on exit.
            watch.tree, watch.tree_seen_at = proc.descendants(), now
        watch.backoff.ran_for(now - watch.launched_at)

    def _exited(self, name: str, proc: ManagedProcess, watch: _Watch, now: float) -> None:
        code = proc.process.returncode if proc.process is not None else None
        delay = watch.backoff.next_delay()
        watch.restart_at = now + delay
        watch.awaiting_ready = False
        logger.warning(
            "%s exited (%s); restarting in %g s (back-off %s; log %s)",
            name,
            _exit_reason(code),
            delay,
            f"doubles up to {watch.backoff.cap:g} s",
            proc.log_path,
        )
        _kill_leftovers(watch.tree)
        watch.restart_at = self.clock() + delay  # the delay counts from a free port

    def _restart(self, name: str, proc: ManagedProcess, watch: _Watch, now: float) -> None:
        watch.restart_at = None
        watch.restarts += 1
        watch.launched_at = now
        try:
            proc.launch()
        except OSError as e:  # the binary vanished, the log is not writable...
            logger.error("%s: restart %d failed: %s", name, watch.restarts, e)
            return
        watch.awaiting_ready = True
        watch.tree, watch.tree_seen_at = proc.descendants(), now
        logger.info("%s restarted (restart %d, pid %s)", name, watch.restarts, proc.pid)
        if self.on_change is not None:
            self.on_change()


def _exit_reason(code: int | None) -> str:
    if code is None:
        return "exit code unknown"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _kill_leftovers(tree: list[psutil.Process]) -> None:
    """SIGKILL what a dead component left running: workers in sessions of their own
    (``bentoml serve``'s circus) would keep its port, and the restart could not listen."""
    left = []
    for member in tree:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if member.is_running() and member.status() != psutil.STATUS_ZOMBIE:
                member.kill()  # psutil refuses a pid reused by another process
                left.append(member)
    if left:
        logger.warning("killed %d process(es) left running by the dead one", len(left))
        psutil.wait_procs(left, timeout=5)
