"""Helpers of the end-to-end tests: a live cluster (kind, by default) with the chart installed
by `make kind-deploy` (k8s/kind-deploy.sh). Every test is skipped, with the reason printed,
when no cluster is reachable or the release is not installed there.

Settings (env prefix WINEMEUP_E2E_): see :class:`E2ESettings`.
"""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

logger = logging.getLogger(__name__)


class E2ESettings(BaseSettings):
    """Where the cluster, the release and its ingress are."""

    model_config = SettingsConfigDict(env_prefix="WINEMEUP_E2E_", extra="ignore")

    context: str | None = Field(
        default="kind-winemeup", description="kubeconfig context (empty: the current one)."
    )
    namespace: str = Field(default="winemeup", description="Namespace of the release.")
    release: str = Field(default="winemeup", description="Helm release name.")
    ingress_url: str = Field(
        default="http://127.0.0.1",
        description="Where the ingress controller listens (kind maps it to the host).",
    )
    host: str = Field(
        default="winemeup.localtest.me", description="Host of the Ingress rule (sent as the Host header)."
    )
    prometheus_namespace: str = Field(default="monitoring", description="Namespace of kube-prometheus-stack.")
    prometheus_service: str = Field(
        default="kube-prometheus-stack-prometheus:9090",
        description="Prometheus Service and port (reached via the API server proxy).",
    )
    load_seconds: float = Field(default=180.0, gt=0, description="Longest the HPA test drives load.")
    scale_in_seconds: float = Field(
        default=300.0, gt=0, description="Longest the HPA test waits for the scale-in."
    )


@dataclass
class Cluster:
    """Clients and names of the release under test."""

    settings: E2ESettings
    core: Any
    apps: Any
    autoscaling: Any
    api_key: str

    @property
    def fullname(self) -> str:
        # The chart's fullname: the release name when it contains "winemeup".
        release = self.settings.release
        return release if "winemeup" in release else f"{release}-winemeup"

    def http(self, method: str, path: str, body: Any = None, timeout: float = 10.0) -> tuple[int, bytes]:
        """One HTTP call through the ingress, with the API key."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            self.settings.ingress_url.rstrip("/") + path, data=data, method=method
        )
        # The Host header selects the Ingress rule; no DNS needed for winemeup.localtest.me.
        request.add_header("Host", self.settings.host)
        request.add_header("X-API-Key", self.api_key)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def prometheus(self, query: str) -> list[dict[str, Any]]:
        """An instant PromQL query, through the API server's service proxy."""
        s = self.settings
        path = (
            f"/api/v1/namespaces/{s.prometheus_namespace}/services/{s.prometheus_service}/proxy/api/v1/query"
        )
        client = self.core.api_client
        method, url, headers, body, post_params = client.param_serialize(
            method="GET", resource_path=path, query_params=[("query", query)], auth_settings=["BearerToken"]
        )
        response = client.call_api(
            method, url, header_params=headers, body=body, post_params=post_params, _request_timeout=10
        )
        payload = json.loads(response.read())
        assert payload["status"] == "success", payload
        return list(payload["data"]["result"])


def _secret_name(settings: E2ESettings) -> str:
    release = settings.release
    return release if "winemeup" in release else f"{release}-winemeup"
