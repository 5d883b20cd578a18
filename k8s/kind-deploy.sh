#!/usr/bin/env bash
# Builds the images of this checkout, loads them into the kind cluster and installs (or
# upgrades) the chart with k8s/values/winemeup-kind.yaml, then runs `helm test`.
#   k8s/kind-deploy.sh            every model in a runner (the chart's default placement)
# Needs the model store ($BENTOML_HOME; make train-fast fills it), docker, kind, helm.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need docker kind helm kubectl
kind get clusters 2>/dev/null | grep -qx "$CLUSTER" || { log "no kind cluster $CLUSTER: run make kind-up"; exit 1; }
kubectl config use-context "kind-$CLUSTER" >/dev/null

tag="$(image_tag)"
bash "$repo/k8s/export-models.sh"
images=("winemeup-router:$tag" "winemeup-ui:$tag")
bash "$repo/k8s/build-image.sh" router "winemeup-router:$tag"
bash "$repo/k8s/build-image.sh" ui "winemeup-ui:$tag"
for model in "${MODELS[@]}"; do
  image="winemeup-runner-$(slug "$model"):$tag"
  bash "$repo/k8s/build-image.sh" runner "$model" "$image"
  images+=("$image")
done
log "loading ${#images[@]} images into kind"
kind load docker-image --name "$CLUSTER" "${images[@]}"

helm upgrade --install "$RELEASE" "$repo/charts/winemeup" \
  --namespace "$NAMESPACE" --create-namespace \
  -f "$repo/k8s/values/winemeup-kind.yaml" \
  --set "router.image.tag=$tag" --set "ui.image.tag=$tag" --set "runnerDefaults.image.tag=$tag" \
  --wait --timeout 10m
helm test "$RELEASE" --namespace "$NAMESPACE" --logs
log "deployed $tag: http://winemeup.localtest.me/ (UI), http://winemeup.localtest.me/docs (API); next: make e2e"
