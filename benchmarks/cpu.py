"""CPU time per request of the router, a runner and Redis, read from ``/proc/<pid>/stat``.

A process's CPU time is its ``utime + stime`` (fields 14 and 15, in clock ticks) plus that of
its living descendants: a BentoML runner serves from a worker process under its arbiter. The
difference over one wrk run, divided by the requests it completed, is the CPU one request cost
each process (the load generator runs in its own process and is not counted).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import psutil

from benchmarks.load import Result

TICK_SECONDS = 1.0 / os.sysconf("SC_CLK_TCK")


def _own_cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return 0.0
    # The command name (field 2) may hold spaces; the fields after it are space-separated.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) * TICK_SECONDS


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its living descendants, in seconds."""
    try:
        children = [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    return sum(_own_cpu_seconds(p) for p in (pid, *children))


@dataclass
class CpuRow:
    """CPU time per request of each process during one run."""

    scenario: str
    result: Result
    per_request_us: dict[str, float]
    """Process role (router, runner, Redis) to µs of CPU per completed request."""


class CpuMeter:
    """Snapshots of several processes' CPU time around a run."""

    def __init__(self, pids: dict[str, int]):
        self.pids = pids
        self.before: dict[str, float] = {}

    def start(self) -> None:
        self.before = {role: cpu_seconds(pid) for role, pid in self.pids.items()}

    def stop(self, scenario: str, result: Result) -> CpuRow:
        spent = {role: cpu_seconds(pid) - self.before[role] for role, pid in self.pids.items()}
        requests = max(result.requests, 1)
        return CpuRow(scenario, result, {role: 1e6 * s / requests for role, s in spent.items()})
