#!/usr/bin/env bash
# Builds the images of this checkout that the release needs, loads them into the kind cluster
# and installs (or upgrades) the chart with k8s/values/winemeup-kind.yaml plus any values files
# given as arguments, then runs `helm test`.
#   k8s/kind-deploy.sh                                        every model in a runner
#   k8s/kind-deploy.sh charts/winemeup/ci/inline-placement-values.yaml   some models inline
#   WINEMEUP_KIND_OPERATOR=true k8s/kind-deploy.sh             operator mode (make kind-deploy-operator)
# Operator mode (runners.managedBy=operator, docs/operator.md) installs charts/winemeup-crds
# first, builds and loads the operator image too, and waits for every WineModel to be Ready
# (the operator makes the runners) before `helm test`; then `make e2e-operator`. Switching an
# installed release between the modes restarts its runners once.
# The images needed are read from the chart's own render (runner images for runner-placed
# models, the router-models variant when a model is inline). Needs the model store
# ($BENTOML_HOME; make train-fast fills it), docker, kind, helm.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need docker kind helm kubectl
need_docker_daemon
kind get clusters 2>/dev/null | grep -qx "$CLUSTER" || { log "no kind cluster $CLUSTER: run make kind-up"; exit 1; }
kubectl config use-context "kind-$CLUSTER" >/dev/null

tag="$(image_tag)"
bash "$repo/k8s/export-models.sh"   # build/model-store/<model>.bentomodel for the images
operator_mode="${WINEMEUP_KIND_OPERATOR:-false}"
case "$operator_mode" in true | false) ;; *) log "WINEMEUP_KIND_OPERATOR=$operator_mode: expected true or false"; exit 2 ;; esac
chart_args=(-f "$repo/k8s/values/winemeup-kind.yaml")
for values in "$@"; do chart_args+=(-f "$values"); done
if [ "$operator_mode" = true ]; then
  chart_args+=(--set runners.managedBy=operator
    --set "operator.image.repository=winemeup-operator" --set "operator.image.tag=$tag")
fi
# Local images: repositories without a registry, this checkout's tag.
chart_args+=(
  --set "router.image.repository=winemeup-router" --set "router.image.tag=$tag"
  --set "router.inlineImage.repository=winemeup-router-models" --set "router.inlineImage.tag=$tag"
  --set "ui.image.repository=winemeup-ui" --set "ui.image.tag=$tag"
  --set "runnerDefaults.image.repositoryPrefix=winemeup-runner-" --set "runnerDefaults.image.tag=$tag"
)
mapfile -t images < <(
  helm template "$RELEASE" "$repo/charts/winemeup" --namespace "$NAMESPACE" "${chart_args[@]}" \
    | sed -n 's/^ *image: "\(winemeup-[^"]*\)"$/\1/p' | sort -u
)
[ ${#images[@]} -gt 0 ] || { log "the render names no winemeup image"; exit 1; }

for image in "${images[@]}"; do
  repository="${image%%:*}"
  case "$repository" in
    winemeup-router | winemeup-router-models | winemeup-ui | winemeup-operator)
      bash "$repo/k8s/build-image.sh" "${repository#winemeup-}" "$image" ;;
    winemeup-runner-*)
      model="${repository#winemeup-runner-}"
      bash "$repo/k8s/build-image.sh" runner "${model//-/_}" "$image" ;;
    *) log "do not know how to build $image"; exit 1 ;;
  esac
done
log "loading ${#images[@]} images into kind: ${images[*]}"
kind load docker-image --name "$CLUSTER" "${images[@]}"

if [ "$operator_mode" = true ]; then
  # CRDs are cluster-wide and kept when their chart is uninstalled (helm.sh/resource-policy).
  helm upgrade --install winemeup-crds "$repo/charts/winemeup-crds" --namespace "$NAMESPACE" --create-namespace --wait
  kubectl wait --for condition=established --timeout 60s \
    crd/winemodels.serving.winemeup.io crd/winetraffics.serving.winemeup.io
fi
helm upgrade --install "$RELEASE" "$repo/charts/winemeup" \
  --namespace "$NAMESPACE" --create-namespace "${chart_args[@]}" --wait --timeout 10m
if [ "$operator_mode" = true ]; then
  # helm --wait covers the operator, not the runners it makes from the WineModels.
  log "waiting for every WineModel to be Ready (the operator's runners)"
  kubectl -n "$NAMESPACE" wait --for condition=Ready winemodels --all --timeout 10m || {
    kubectl -n "$NAMESPACE" get winemodels -o wide >&2
    kubectl -n "$NAMESPACE" logs -l app.kubernetes.io/component=operator --tail 50 >&2 || true
    exit 1
  }
fi
helm test "$RELEASE" --namespace "$NAMESPACE" --logs
next="make e2e"; [ "$operator_mode" = true ] && next="make e2e-operator"
log "deployed $tag: http://winemeup.localtest.me/ (UI), http://winemeup.localtest.me/docs (API); next: $next"
