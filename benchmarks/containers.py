"""The chart's workloads as containers, measured beside the process stack of `make run`.

    python -m benchmarks.containers [--seconds 15] [--connections 4]   (as root, with podman)

In one run, one after the other (never both at once, on a 2-core machine):

1. the release rendered with k8s/values/containers-local.yaml is played with
   tests/containers/harness.py; the time from the first ``kube play`` until each pod passes its
   readiness probe is recorded (goal: <= 20 s per runner);
2. cache misses per second through the containers (wrk -> router container -> lightgbm runner
   container), every request a fresh random wine (wrk's generator seeded per run), p50 and p99;
3. 10,000 more requests of fresh wines spread over the seven models, then the resident memory
   (RSS) of each container's processes (main process and its children, e.g. BentoML's arbiter
   and worker);
4. the release is removed and ``python -m services.stack`` (what `make run` starts) is started on
   the same model store, and the same wrk run measures its router -> runner misses.

Prints a Markdown report (and writes it to ``--out`` when given).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx
import psutil

from benchmarks.load import Result, measure, predict_body
from tests.containers.conftest import ContainersSettings, render
from tests.containers.harness import (
    PlayedRelease,
    engine_problem,
    ensure_standin_images,
    interrupt_on_sigterm,
    missing_images,
    podman,
    remove_run,
)
from tests.containers.load import random_wine

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]


def _rss_mb(pid: int) -> float:
    """RSS of a process and all its descendants, in MB."""
    parent = psutil.Process(pid)
    total = parent.memory_info().rss
    for child in parent.children(recursive=True):
        try:
            total += child.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def _drive(router_url: str, api_key: str, models: list[str], requests: int, seed: int) -> tuple[int, int]:
    """``requests`` fresh wines over ``models`` from 4 threads: (answered 200, other)."""
    rng = random.Random(seed)
    wines = [random_wine(rng) for _ in range(requests)]
    ok = failed = 0
    from concurrent.futures import ThreadPoolExecutor

    def one(i: int) -> bool:
        with httpx.Client(base_url=router_url, headers={"X-API-Key": api_key}, timeout=30) as client:
            for j in range(i, requests, 4):
                status = client.post(
                    "/v1/predict", json={"features": wines[j], "model": models[j % len(models)]}
                )
                counts[i][0 if status.status_code == 200 else 1] += 1
        return True

    counts = [[0, 0] for _ in range(4)]
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(one, range(4)))
    ok = sum(c[0] for c in counts)
    failed = sum(c[1] for c in counts)
    return ok, failed


def _row(name: str, r: Result) -> str:
    return f"| {name} | {r.rps:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | {r.errors} |"


def containers_part(args: argparse.Namespace, settings: ContainersSettings) -> tuple[list[str], Result]:
    remove_run()
    run_id = uuid.uuid4().hex[:6]
    played = PlayedRelease(render(settings, f"bench-{run_id}"), run_id=run_id)
    lines: list[str] = []
    try:
        played.up(ready_timeout=settings.ready_timeout_seconds)
        lines += [
            "### Time from `kube play` until ready",
            "",
            "| pod (from) | ready after (s) |",
            "|---|---:|",
        ]
        for w in sorted(played.workloads, key=lambda w: w.ready_after or 0):
            lines.append(
                f"| {w.pod_name.removeprefix(f'bench-{run_id}-winemeup-')} ({w.kind}) | {w.ready_after:.1f} |"
            )
        runners = [w.ready_after or 0.0 for w in played.workloads if "winemeup.io/model" in w.labels]
        lines += [
            "",
            f"Every pod ready {max(w.ready_after or 0 for w in played.workloads):.1f} s after the "
            f"first `kube play`; slowest runner {max(runners):.1f} s (goal <= 20 s per runner).",
            "",
        ]

        router = played.workload("router")
        api_key = played.secret_data()["api-keys"].split(",")[0]
        url = router.url("router")
        misses = measure(
            url + "/v1/predict",
            predict_body("lightgbm", vary=True),
            seconds=args.seconds,
            warmup_seconds=3,
            connections=args.connections,
            api_key=api_key,
        )

        models = sorted(
            w.labels["winemeup.io/model"] for w in played.workloads if "winemeup.io/model" in w.labels
        )
        started = time.monotonic()
        ok, failed = _drive(url, api_key, models, 10_000, seed=random.SystemRandom().randrange(2**31))
        lines += [
            f"### RSS after 10,000 more requests ({ok} answered 200, {failed} not, in "
            f"{time.monotonic() - started:.0f} s, fresh wines over the {len(models)} models)",
            "",
            "| container | RSS (MB) |",
            "|---|---:|",
        ]
        for w in played.workloads:
            for c in w.containers():
                name = w.container_name(c["name"])
                pid = int(
                    podman("inspect", "--type", "container", "--format", "{{.State.Pid}}", name).strip()
                )
                lines.append(
                    f"| {w.name.removeprefix(f'bench-{run_id}-winemeup-')}/{c['name']} | {_rss_mb(pid):.0f} |"
                )
        lines.append("")
    finally:
        played.down()
    return lines, misses


def stack_part(args: argparse.Namespace, rate_limits: str) -> Result:
    from tests.support.stack import RunningStack

    # The stack's router inherits this environment: the same per-key budget as the containers'
    # router (k8s/values/containers-local.yaml), so neither answers the load with 429s.
    os.environ["WINEMEUP_ROUTER_RATE_LIMITS"] = rate_limits
    store = Path(os.environ.get("BENTOML_HOME", REPO_ROOT / ".bentoml"))
    with tempfile.TemporaryDirectory(prefix="winemeup-bench-stack-") as tmp:
        stack = RunningStack(Path(tmp), store).start()
        try:
            url = stack.state["router_url"]
            return measure(
                url + "/v1/predict",
                predict_body("lightgbm", vary=True),
                seconds=args.seconds,
                warmup_seconds=3,
                connections=args.connections,
                api_key=stack.api_key,
            )
        finally:
            stack.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=int, default=15, help="length of each measured wrk run")
    parser.add_argument("--connections", type=int, default=4, help="wrk connections")
    parser.add_argument("--out", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    problem = engine_problem()
    if problem:
        print(f"benchmarks.containers: {problem}", file=sys.stderr)
        return 2
    settings = ContainersSettings()
    docs = render(settings, "probe")
    ensure_standin_images(docs)
    missing = missing_images(docs)
    if missing:
        print(
            f"benchmarks.containers: images missing: {', '.join(missing)} (make images IMAGE_TAG="
            f"{settings.image_tag})",
            file=sys.stderr,
        )
        return 2
    with interrupt_on_sigterm():
        lines, in_containers = containers_part(args, settings)
        router_config = next(
            d for d in docs if d["kind"] == "ConfigMap" and "WINEMEUP_ROUTER_RATE_LIMITS" in d.get("data", {})
        )
        in_processes = stack_part(args, str(router_config["data"]["WINEMEUP_ROUTER_RATE_LIMITS"]))
    lines += [
        f"### Cache misses through router -> lightgbm runner ({args.connections} wrk connections, "
        f"{args.seconds} s, fresh random wines)",
        "",
        "| stack | misses/s | p50 (ms) | p99 (ms) | errors |",
        "|---|---:|---:|---:|---:|",
        _row("containers (chart's workloads, podman)", in_containers),
        _row("processes (`make run`, services/stack)", in_processes),
        "",
    ]
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
