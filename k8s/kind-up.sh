#!/usr/bin/env bash
# Creates the kind cluster `winemeup` (k8s/kind-config.yaml) and installs, at pinned versions
# (k8s/versions.env): metrics-server (the HPAs need CPU metrics), ingress-nginx (bound to the
# host's ports 80/443) and kube-prometheus-stack (Prometheus, Grafana, kube-state-metrics).
# Idempotent: an existing cluster is reused and the charts are upgraded in place.
# Needs docker, kind, and helm/kubectl (scripts/install-k8s-tools.sh puts those in .tools/bin).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need docker kind helm kubectl
need_docker_daemon
need_kind_version

if kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  log "cluster $CLUSTER exists"
else
  kind create cluster --config "$repo/k8s/kind-config.yaml" --name "$CLUSTER" \
    --image "$KIND_NODE_IMAGE" --wait 120s
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

helm repo add metrics-server https://kubernetes-sigs.github.io/metrics-server/ --force-update >/dev/null
helm repo add ingress-nginx https://kubernetes.github.io/ingress-nginx --force-update >/dev/null
helm repo add prometheus-community https://prometheus-community.github.io/helm-charts --force-update >/dev/null
helm repo update >/dev/null

log "metrics-server $METRICS_SERVER_CHART_VERSION"
# kind's kubelets serve self-signed certificates.
helm upgrade --install metrics-server metrics-server/metrics-server \
  --version "$METRICS_SERVER_CHART_VERSION" --namespace kube-system \
  --set 'args={--kubelet-insecure-tls}' --wait --timeout 5m

log "ingress-nginx $INGRESS_NGINX_CHART_VERSION"
helm upgrade --install ingress-nginx ingress-nginx/ingress-nginx \
  --version "$INGRESS_NGINX_CHART_VERSION" --namespace ingress-nginx --create-namespace \
  -f "$repo/k8s/values/ingress-nginx-kind.yaml" --wait --timeout 5m

log "kube-prometheus-stack $KUBE_PROMETHEUS_STACK_CHART_VERSION"
helm upgrade --install kube-prometheus-stack prometheus-community/kube-prometheus-stack \
  --version "$KUBE_PROMETHEUS_STACK_CHART_VERSION" --namespace monitoring --create-namespace \
  -f "$repo/k8s/values/kube-prometheus-stack-kind.yaml" --wait --timeout 10m

log "cluster ready: kubectl context kind-$CLUSTER; next: make kind-deploy"
