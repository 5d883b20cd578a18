"""The e2e suite's own adapters work without a cluster: the Prometheus query goes through the
API server's service-proxy path with the kubernetes client, checked here against a real
Prometheus serving under that path (--web.route-prefix)."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
from e2e_cluster import Cluster, E2ESettings

from tests.support.binaries import require_binary
from tests.support.waiting import wait_until

pytestmark = pytest.mark.integration


def test_prometheus_query_through_the_service_proxy_path(tmp_path: Path) -> None:
    prometheus = require_binary("prometheus", "Debian package prometheus")
    from kubernetes import client

    settings = E2ESettings()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    prefix = (
        f"/api/v1/namespaces/{settings.prometheus_namespace}/services/{settings.prometheus_service}/proxy"
    )
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: self\n    metrics_path: {prefix}/metrics\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{port}']}}]\n"
    )
    process = subprocess.Popen(
        [
            prometheus,
            f"--config.file={tmp_path / 'prometheus.yml'}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--web.route-prefix={prefix}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        configuration = client.Configuration()
        configuration.host = f"http://127.0.0.1:{port}"
        cluster = Cluster(settings, client.CoreV1Api(client.ApiClient(configuration)), None, None, "unused")

        def self_up() -> list[dict[str, Any]]:
            try:
                return list(cluster.prometheus('up{job="self"} == 1'))
            except Exception:  # not listening yet
                return []

        result = wait_until(self_up, 30, interval=0.5, message="Prometheus never reported its own target up")
        assert result[0]["metric"]["job"] == "self"
        assert cluster.prometheus('up{job="nothing"}') == []
    finally:
        process.terminate()
        process.wait(timeout=10)
