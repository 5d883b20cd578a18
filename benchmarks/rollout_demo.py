"""A rollout of a retrained LightGBM under load, and a bad candidate rolled back by the gate.

``python -m benchmarks.rollout_demo [--store BENTOML_HOME --stable V --good V --bad V]``

Without a store it trains three LightGBM versions (fast mode, about a minute) into a temporary
one: the stable version, an equivalent retrain (``--candidate --seed 7``) and a bad candidate
(``--candidate`` on the same wines with shuffled quality labels). For each candidate it starts
a router (inline, its own process, loopback), puts wrk load on ``/v1/predict`` with fresh random
wines, starts an automatic rollout (``shadow``, 10, 50, 100) and prints the gate's figures at
every step it left, the step it stopped at, and wrk's count of failed requests.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.load import predict_body, wrk
from services.stack.processes import ManagedProcess, free_port
from training.candidates import shuffled_labels, train_version

MODEL = "lightgbm"
GATE = {
    "minWinesCompared": 300,
    "maxMeanAbsScoreDifference": 0.3,
    "minGradeAgreement": 0.75,
    "maxP99LatencyRatio": 20,
    "maxErrorRate": 0.01,
}
STEPS: list[Any] = ["shadow", 10, 50, 100]


def _router(home: Path, candidate: str, log_dir: Path) -> tuple[ManagedProcess, str, str, str]:
    port = free_port()
    key, admin = "k-" + secrets.token_hex(8), "a-" + secrets.token_hex(8)
    env = {
        "WINEMEUP_ROUTER_PORT": str(port),
        "WINEMEUP_ROUTER_API_KEYS": key,
        "WINEMEUP_ROUTER_ADMIN_API_KEYS": admin,
        "WINEMEUP_ROUTER_MODELS": MODEL,
        "WINEMEUP_ROUTER_DEFAULT_MODEL": MODEL,
        "WINEMEUP_ROUTER_MODEL_STORE": str(home),
        "BENTOML_HOME": str(home),
        "WINEMEUP_ROUTER_CANDIDATES": json.dumps({MODEL: {"version": candidate}}),
        "WINEMEUP_ROUTER_RATE_LIMIT_ENABLED": "false",
        "WINEMEUP_ROUTER_DRIFT_ENABLED": "false",
        "WINEMEUP_ROUTER_ROLLOUT_INTERVAL_SECONDS": "0.5",
    }
    url = f"http://127.0.0.1:{port}"
    proc = ManagedProcess(
        [sys.executable, "-m", "services.router"],
        log_dir / f"router-{port}.log",
        env,
        ready_url=url + "/healthz",
        ready_timeout=60,
        name=f"router-{port}",
    )
    proc.start()
    return proc, url, key, admin


def _versions_ready(url: str, key: str) -> bool:
    models = httpx.get(url + "/v1/models", headers={"X-API-Key": key}, timeout=5).json()["models"]
    return all(v["status"] == "ready" for v in next(m for m in models if m["name"] == MODEL)["versions"])


def run_one(home: Path, candidate: str, label: str, seconds: int, log_dir: Path) -> dict[str, Any]:
    """One automatic rollout under wrk load; the rollout's final state and wrk's figures."""
    proc, url, key, admin = _router(home, candidate, log_dir)
    try:
        deadline = time.monotonic() + 60
        while not _versions_ready(url, key):
            if time.monotonic() > deadline:
                raise RuntimeError("the candidate did not load")
            time.sleep(0.2)
        results: list[Any] = []
        load = threading.Thread(
            target=lambda: results.append(
                wrk(
                    url + "/v1/predict",
                    predict_body(MODEL, vary=True),
                    api_key=key,
                    connections=4,
                    seconds=seconds,
                )
            )
        )
        load.start()
        time.sleep(1.0)
        policy = {"model": MODEL, "steps": STEPS, "auto": True, "gate": GATE}
        answer = httpx.put(url + "/v1/rollouts", json=policy, headers={"X-API-Key": admin}, timeout=10)
        answer.raise_for_status()
        state: dict[str, Any] = {}
        while load.is_alive():
            state = httpx.get(url + "/v1/rollouts", headers={"X-API-Key": key}, timeout=10).json()[
                "rollouts"
            ][MODEL]
            time.sleep(0.5)
        load.join()
        state = httpx.get(url + "/v1/rollouts", headers={"X-API-Key": key}, timeout=10).json()["rollouts"][
            MODEL
        ]
        return {"label": label, "candidate": candidate, "state": state, "load": results[0]}
    finally:
        proc.stop()


def _fmt(value: Any) -> str:
    return "-" if value is None else (f"{value:.3f}" if isinstance(value, float) else str(value))


def report(outcome: dict[str, Any]) -> None:
    state, load = outcome["state"], outcome["load"]
    print(
        f"\n{outcome['label']} candidate {outcome['candidate']}: {state['phase']} "
        f"(wrk: {load.requests} requests in {load.seconds:.0f} s, {load.errors} failed, "
        f"p99 {load.p99_ms:.1f} ms)"
    )
    print(f"{'step':>7} {'action':>9} {'wines':>6} {'mean|d|':>8} {'grades':>7} {'cand err':>9} {'p99 x':>7}")
    for left in state["history"]:
        f = left["figures"] or {}
        print(
            f"{left['step']!s:>7} {left['action']:>9} {_fmt(f.get('winesCompared')):>6} "
            f"{_fmt(f.get('meanAbsScoreDifference')):>8} {_fmt(f.get('gradeAgreement')):>7} "
            f"{_fmt(f.get('candidateErrorRate')):>9} {_fmt(f.get('p99LatencyRatio')):>7}"
        )
        print(f"{'':>7} {left['reason']}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.rollout_demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--store", type=Path, help="BentoML home holding the three versions")
    parser.add_argument("--stable")
    parser.add_argument("--good")
    parser.add_argument("--bad")
    parser.add_argument("--data-dir", type=Path, default=Path("data/wine-quality"))
    parser.add_argument("--seconds", type=int, default=30, help="wrk run per rollout")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rollout-demo-") as tmp:
        home = args.store
        good, bad = args.good, args.bad
        if home is None:
            home = Path(tmp) / "bentoml"
            print("training three LightGBM versions (fast mode) ...", flush=True)
            reports = Path(tmp) / "reports"
            train_version(MODEL, home, args.data_dir, reports)
            good = train_version(MODEL, home, args.data_dir, reports, "--candidate", "--seed", "7")
            shuffled = shuffled_labels(args.data_dir, Path(tmp) / "shuffled")
            bad = train_version(MODEL, home, shuffled, reports, "--candidate", "--seed", "11", "--no-verify")
        stable = (home / "models" / MODEL / "latest").read_text().strip()
        print(f"stable {stable}, retrained candidate {good}, bad candidate {bad}; gate {json.dumps(GATE)}")
        for label, candidate in (("retrained (seed 7)", good), ("bad (shuffled labels)", bad)):
            report(run_one(home, candidate, label, args.seconds, Path(tmp)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
