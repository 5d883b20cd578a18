"""Fixtures of the end-to-end tests (marker e2e): the live cluster, or a skip saying why not.

Run `make kind-up kind-deploy`, then `make e2e`. Settings: WINEMEUP_E2E_* (see e2e_cluster.py).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest
from e2e_cluster import Cluster, E2ESettings, _secret_name


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    """The live cluster and the release's API key, or a skip saying why there is none."""
    settings = E2ESettings()
    try:
        from kubernetes import client, config
        from kubernetes.client.rest import ApiException
    except ImportError as e:  # pragma: no cover - the dev dependencies include it
        pytest.skip(f"the kubernetes package is not installed: {e}")
    try:
        config.load_kube_config(context=settings.context or None)
        core = client.CoreV1Api()
        core.list_namespace(limit=1, _request_timeout=5)
    except Exception as e:  # no kubeconfig, unknown context, nothing answering
        reason = f"no Kubernetes cluster reachable (context {settings.context!r}): {type(e).__name__}: {e}"
        print(f"\ne2e skipped: {reason}")
        pytest.skip(reason)
    try:
        secret = core.read_namespaced_secret(_secret_name(settings), settings.namespace, _request_timeout=5)
    except ApiException as e:
        reason = (
            f"release {settings.release!r} not installed in namespace {settings.namespace!r} "
            f"({e.status}): run make kind-deploy"
        )
        print(f"\ne2e skipped: {reason}")
        pytest.skip(reason)
    api_key = base64.b64decode(secret.data["ui-api-key"]).decode()
    yield Cluster(settings, core, client.AppsV1Api(), client.AutoscalingV2Api(), api_key)
