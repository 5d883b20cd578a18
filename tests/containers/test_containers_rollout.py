"""A candidate runner rendered by the chart (models.lightgbm.candidate) and a rollout promoted
under load, on containers played from the render (issue 16).

The candidate is a LightGBM retrained in this session (`python -m training train lightgbm
--fast --candidate --seed 7` on a copy of the session's store), exported with `bentoml models
export` and served by a file server container on the release's network; the chart renders it
as `modelUri` + `modelSha256` (http on that private network, so `allowInsecureModelUri`), the
candidate runner's model-fetch init container imports it, and the runner serves that version
(WINEMEUP_RUNNER_VERSION). The router is told the candidate Service by the chart alone.

Under continuous load of fresh random wines (three threads on `/v1/predict`), an admin starts
a rollout (`PUT /v1/rollouts`, steps 50 then 100, auto off), sees both versions answer at 50 %,
and promotes (`POST /v1/rollouts/promote`): every answer is a 2xx, and every answer sent after
the promote names the candidate version.

The same runs in operator mode: the runner objects (stable and candidate) are the ones the
operator's pure reconcile makes from the rendered WineModel (as tests/operator's container
test plays them; the operator itself does not run, no API server here), and the rollout is
started by the operator's own ``drive_rollout`` from the WineModel's spec.rollout against the
real router: its Rollout condition is ``Running`` (not ``CandidateNotServed``: the router
serves the candidate the chart told it about), then ``Promoted`` after the admin's promote.

Only lightgbm is enabled and the UI is off, to keep the run short.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.operator.reconcile import desired_objects
from services.operator.release import ReleaseContext
from services.operator.rollout import drive_rollout
from services.operator.traffic import RouterAdmin
from tests.containers.conftest import ContainersSettings, render
from tests.containers.harness import PlayedRelease, remove_run
from tests.containers.load import random_wine
from tests.support.waiting import wait_until
from training.candidates import train_version

pytestmark = [pytest.mark.containers, pytest.mark.slow]

MODEL = "lightgbm"
OTHERS = ("xgboost", "catboost", "random_forest", "extra_trees", "hist_gradient_boosting", "svr")
BASE = [*(f"models.{m}.enabled=false" for m in OTHERS), "ui.enabled=false"]
ARCHIVE = "lightgbm-candidate.bentomodel"
ROLLOUT = {"steps": [50, 100], "auto": False}


def _operator_side(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Operator mode as played: Helm's objects, and the runner objects the pure reconcile makes
    from each rendered WineModel (with the rendered release context) instead of the operator."""
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].endswith("-operator"))
    context = ReleaseContext.model_validate_json(config["data"]["release.json"])
    made: list[dict[str, Any]] = []
    for wine_model in (d for d in docs if d["kind"] == "WineModel"):
        wine_model["metadata"] |= {"generation": 1, "uid": "00000000-0000-4000-8000-000000000002"}
        made += desired_objects(wine_model, context)
    helm_side = [
        d
        for d in docs
        if d["kind"] not in ("WineModel", "WineTraffic")
        and d["metadata"].get("labels", {}).get("app.kubernetes.io/component") != "operator"
    ]
    return helm_side + made


@pytest.fixture(scope="module")
def candidate(
    model_store: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> tuple[bytes, str]:
    """A LightGBM candidate retrained here with another seed, exported: (archive, version)."""
    root = tmp_path_factory.mktemp("rollout-candidate")
    home = root / "bentoml"
    shutil.copytree(model_store / "models" / MODEL, home / "models" / MODEL, symlinks=True)
    stable = (home / "models" / MODEL / "latest").read_text().strip()
    version = train_version(MODEL, home, data_dir, root / "reports", "--candidate", "--seed", "7")
    assert version != stable
    archive = root / ARCHIVE
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", "BENTOML_HOME": str(home)}
    subprocess.run(
        [
            str(Path(sys.executable).parent / "bentoml"),
            "models",
            "export",
            f"{MODEL}:{version}",
            str(archive),
        ],
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
    )
    return archive.read_bytes(), version


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


def _versions(router_url: str, key: str) -> dict[str, str]:
    """{version: status} of lightgbm as the router lists it."""
    try:
        listed = httpx.get(router_url + "/v1/models", headers={"X-API-Key": key}, timeout=5).json()
    except (httpx.HTTPError, ValueError):
        return {}
    entry: dict[str, Any] = next((m for m in listed.get("models", []) if m["name"] == MODEL), {})
    return {v["version"]: v["status"] for v in entry.get("versions") or []}


@pytest.fixture(params=["helm", "operator"])
def rollout_release(
    request: pytest.FixtureRequest,
    containers_settings: ContainersSettings,
    engine_ready: None,
    candidate: tuple[bytes, str],
    tmp_path: Path,
) -> Iterator[tuple[PlayedRelease, str]]:
    """(release, runners.managedBy): the release with lightgbm's candidate runner fetching the
    retrained archive from a file server container on the release's network; router, Redis and
    both runners ready, and the router listing both versions ready."""
    remove_run()
    run_id = uuid.uuid4().hex[:6]
    release = f"ro-{run_id}"
    mode = [f"runners.managedBy={request.param}"]
    played = PlayedRelease(render(containers_settings, release, *BASE), run_id=run_id)
    served = tmp_path / "served"
    served.mkdir()
    (served / ARCHIVE).write_bytes(candidate[0])
    served.chmod(0o755)
    (served / ARCHIVE).chmod(0o644)
    try:
        played.prepare()
        image = played.workload(f"runner-{MODEL}").container("runner")["image"]
        address = played.run_container(
            "models",
            image,
            ["python", "-m", "http.server", "8080", "--directory", "/srv"],
            [f"{served}:/srv:ro"],
        )
        uri = f"http://{address}:8080/{ARCHIVE}"
        wait_until(
            lambda: _answers(uri), 60, interval=0.2, message="the file server container does not answer"
        )
        docs = render(
            containers_settings,
            release,
            *BASE,
            *mode,
            f"models.{MODEL}.candidate.version={candidate[1]}",
            f"models.{MODEL}.candidate.modelUri={uri}",
            f"models.{MODEL}.candidate.modelSha256={hashlib.sha256(candidate[0]).hexdigest()}",
            f"models.{MODEL}.candidate.allowInsecureModelUri=true",
        )
        played.reset_docs(_operator_side(docs) if request.param == "operator" else docs)
        names = [w.name for w in played.workloads]
        assert any(n.endswith(f"-runner-{MODEL}-candidate") for n in names), names
        played.start(ready_timeout=containers_settings.ready_timeout_seconds)
        key = played.secret_data()["api-keys"].split(",")[0]
        router_url = played.workload("router").url("router")
        wait_until(
            lambda: list(_versions(router_url, key).values()) == ["ready", "ready"],
            120,
            interval=0.5,
            message=lambda: f"lightgbm's versions as the router lists them: {_versions(router_url, key)}",
        )
        yield played, request.param
    finally:
        played.down()


@dataclass
class _VersionLoad:
    """Threads posting fresh random wines to /v1/predict, recording (sent at, status, version)."""

    router_url: str
    api_key: str
    workers: int = 3
    answers: list[tuple[float, int, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def _work(self, index: int) -> None:
        rng = random.Random(index)
        with httpx.Client(base_url=self.router_url, headers={"X-API-Key": self.api_key}, timeout=10) as c:
            while not self._stop.is_set():
                sent = time.monotonic()
                version = ""
                try:
                    r = c.post("/v1/predict", json={"features": random_wine(rng), "model": MODEL})
                    status = r.status_code
                    if status == 200:
                        version = str(r.json().get("model_version", ""))
                except httpx.HTTPError:
                    status = 0
                with self._lock:
                    self.answers.append((sent, status, version))

    def start(self) -> None:
        for i in range(self.workers):
            thread = threading.Thread(target=self._work, args=(i,), daemon=True, name=f"rollout-load-{i}")
            thread.start()
            self._threads.append(thread)

    def stop(self) -> list[tuple[float, int, str]]:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)
        with self._lock:
            return list(self.answers)

    def versions_since(self, t: float) -> set[str]:
        with self._lock:
            return {v for sent, _, v in self.answers if sent >= t and v}


def test_a_candidate_runner_is_promoted_under_load_without_a_failed_request(
    rollout_release: tuple[PlayedRelease, str], candidate: tuple[bytes, str]
) -> None:
    played, managed_by = rollout_release
    secrets = played.secret_data()
    key, admin = secrets["api-keys"].split(",")[0], secrets["admin-api-keys"].split(",")[0]
    router_url = played.workload("router").url("router")
    versions = _versions(router_url, key)
    assert candidate[1] in versions and len(versions) == 2, versions
    stable = next(v for v in versions if v != candidate[1])

    load = _VersionLoad(router_url, key)
    load.start()
    try:
        with httpx.Client(base_url=router_url, headers={"X-API-Key": admin}, timeout=10) as c:
            wait_until(lambda: len(load.answers) >= 100, 30, interval=0.1, message="no load answers")
            assert load.versions_since(0) == {stable}
            operator = managed_by == "operator"
            spec = {"candidate": {"version": candidate[1], "image": "-"}, "rollout": ROLLOUT}
            if operator:  # the operator's pass applies the WineModel's rollout
                condition, _ = drive_rollout(RouterAdmin(admin), router_url, MODEL, spec)
                assert condition is not None and (condition.status, condition.reason) == (
                    "True",
                    "Running",
                ), condition
            else:
                put = c.put(
                    "/v1/rollouts", json={"model": MODEL, "candidateVersion": candidate[1], **ROLLOUT}
                )
                assert put.status_code == 200, put.text
            at_50 = time.monotonic()
            wait_until(
                lambda: load.versions_since(at_50) == {stable, candidate[1]},
                30,
                interval=0.2,
                message=lambda: f"versions answering at 50 %: {load.versions_since(at_50)}",
            )
            promote = c.post("/v1/rollouts/promote", json={"model": MODEL})
            assert promote.status_code == 200, promote.text
            promoted = time.monotonic()
            rollout = c.get("/v1/rollouts").json()["rollouts"][MODEL]
            assert rollout["phase"] == "promoted", rollout
            if operator:
                condition, status = drive_rollout(RouterAdmin(admin), router_url, MODEL, spec)
                assert condition is not None and condition.reason == "Promoted", condition
                assert status is not None and status["candidateVersion"] == candidate[1], status
            count = len(load.answers)
            wait_until(lambda: len(load.answers) >= count + 300, 60, interval=0.2, message="load stalled")
    finally:
        answers = load.stop()

    failed = [(status, version) for _, status, version in answers if not 200 <= status < 300]
    assert not failed, f"{len(failed)} of {len(answers)} answers failed: {failed[:10]}"
    after = {v for sent, _, v in answers if sent > promoted}
    assert after == {candidate[1]}, f"answers sent after the promote named {after}"
    at_step = [v for sent, _, v in answers if at_50 <= sent < promoted]
    share = at_step.count(candidate[1]) / len(at_step)
    print(f"{len(answers)} answers, 0 failed; at 50 %: {len(at_step)} answers, candidate share {share:.2f}")
