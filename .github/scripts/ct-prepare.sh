#!/usr/bin/env bash
# Prepares the kind cluster for `ct install --namespace NAMESPACE` of charts/winemeup/ci/*.yaml:
#   - loads this checkout's images (built by `make images`) into the kind cluster;
#   - creates what those values files expect to exist already: the key and Redis Secrets
#     (all-features: auth.existingSecret, redis.auth.existingSecret) and the PriorityClass
#     winemeup-serving (all-features: router.priorityClassName);
#   - runs a Redis in NAMESPACE that .github/ct/kind-overrides.yaml points the external-redis
#     file at (its own URL names a host that exists nowhere).
#   .github/scripts/ct-prepare.sh NAMESPACE
set -euo pipefail
namespace="${1:?namespace}"
here="$(dirname "${BASH_SOURCE[0]}")"
# shellcheck source=k8s/lib.sh
source "$here/../../k8s/lib.sh"
need docker kind kubectl

tag="$(image_tag)"
mapfile -t images < <(docker images --format '{{.Repository}}:{{.Tag}}' | grep -E "^winemeup-[a-z0-9-]+:$tag\$" | sort -u)
[ ${#images[@]} -gt 0 ] || { log "no winemeup-*:$tag image: run make images first"; exit 1; }
log "loading ${#images[@]} images into kind: ${images[*]}"
kind load docker-image --name "$CLUSTER" "${images[@]}"

kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$namespace" create secret generic winemeup-api-keys \
  --from-literal=api-keys=ct-key --from-literal=admin-api-keys=ct-admin-key \
  --from-literal=ui-api-key=ct-ui-key --dry-run=client -o yaml | kubectl apply -f -
kubectl -n "$namespace" create secret generic winemeup-redis \
  --from-literal=redis-password=ct-redis-password --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -f - <<YAML
apiVersion: scheduling.k8s.io/v1
kind: PriorityClass
metadata:
  name: winemeup-serving
value: 1000
description: The served path of WineMeUp (charts/winemeup/ci/all-features-values.yaml).
YAML
# The external Redis of ci/external-redis-values.yaml (password as in kind-overrides.yaml).
kubectl -n "$namespace" apply -f - <<YAML
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ct-redis
spec:
  selector:
    matchLabels: {app: ct-redis}
  template:
    metadata:
      labels: {app: ct-redis}
    spec:
      containers:
        - name: redis
          image: redis:7.4-bookworm
          args: ["--requirepass", "ct-external", "--save", ""]
          ports:
            - containerPort: 6379
---
apiVersion: v1
kind: Service
metadata:
  name: ct-redis
spec:
  selector: {app: ct-redis}
  ports:
    - port: 6379
      targetPort: 6379
YAML
kubectl -n "$namespace" rollout status deployment/ct-redis --timeout=180s
