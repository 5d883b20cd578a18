"""The probes answer on the paths and ports the rendered manifests declare: every startup,
readiness and liveness probe of every container, read from the render (httpGet, tcpSocket,
exec), passes against the running containers; and the same probe runner reports a failure
when pointed at a path nothing serves, so a pass means something."""

from __future__ import annotations

import pytest

from tests.containers.harness import PlayedRelease, Probe

pytestmark = [pytest.mark.containers, pytest.mark.slow]


def test_every_declared_probe_passes(release: PlayedRelease) -> None:
    results = {}
    for w in release.workloads:
        for container in w.containers():
            probes = w.probes(container)
            assert {p.kind for p in probes} >= {"readinessProbe", "livenessProbe"}, (
                w.name,
                container["name"],
            )
            for probe in probes:
                passed, detail = probe.run(w.address, w.container_name(container["name"]))
                results[f"{w.name}/{container['name']} {probe.describe()}"] = (passed, detail)
    failed = {k: v for k, v in results.items() if not v[0]}
    assert not failed, failed
    kinds = {k.split(" ")[1] for k in results}
    assert kinds == {"startupProbe", "readinessProbe", "livenessProbe"}, kinds
    assert any(" httpGet " in k for k in results) and any(" exec " in k for k in results), sorted(results)


def test_a_probe_on_an_undeclared_path_fails(release: PlayedRelease) -> None:
    router = release.workload("router")
    container = router.container("router")
    readiness = next(p for p in router.probes(container) if p.kind == "readinessProbe")
    wrong = Probe(
        "readinessProbe",
        {**readiness.spec, "httpGet": {**readiness.spec["httpGet"], "path": "/no-such-probe"}},
        readiness.ports,
    )
    passed, detail = wrong.run(router.address, router.container_name("router"))
    assert not passed and "HTTP 404" in detail, detail
