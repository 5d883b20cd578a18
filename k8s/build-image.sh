#!/usr/bin/env bash
# Builds one WineMeUp image with docker (BuildKit), context = the repository root:
#   k8s/build-image.sh router|router-models|ui            [image:tag]
#   k8s/build-image.sh runner <model>                      [image:tag]
# The image name defaults to $IMAGE (set by skaffold's custom builder), else
# winemeup-<what>:<tag of this checkout>; it is also tagged <repository>:<appVersion>, the tag
# the plain manifests in k8s/manifests/ use. Runner and router-models images need the models
# exported first (k8s/export-models.sh, which reads $BENTOML_HOME).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need docker
need_docker_daemon
what="${1:?router|router-models|ui|runner}"
case "$what" in
  runner)
    model="${2:?runner needs a model name}"
    image="${3:-${IMAGE:-winemeup-runner-$(slug "$model"):$(image_tag)}}"
    if export_is_stale "$model"; then bash "$repo/k8s/export-models.sh" "$model"; fi
    args=(-f "$repo/docker/runner.Dockerfile" --build-arg "MODEL=$model" --build-arg "APP_OWNER=${APP_OWNER:-0}")
    ;;
  router | router-models)
    image="${2:-${IMAGE:-winemeup-$what:$(image_tag)}}"
    if [ "$what" = router-models ]; then
      for model in "${MODELS[@]}"; do
        if export_is_stale "$model"; then bash "$repo/k8s/export-models.sh" "$model"; fi
      done
    fi
    args=(-f "$repo/docker/router.Dockerfile" --target "$what")
    ;;
  ui)
    image="${2:-${IMAGE:-winemeup-ui:$(image_tag)}}"
    args=(-f "$repo/docker/ui.Dockerfile")
    ;;
  *) log "unknown image $what"; exit 2 ;;
esac
# Also tag the chart's appVersion (winemeup-router:0.1.0, ...): the plain manifests in
# k8s/manifests/ name images by it, and a checked-in file cannot know the commit.
tags=(-t "$image")
repository="${image%:*}"
app_version="$(awk '/^appVersion:/ {gsub(/"/, "", $2); print $2}' "$repo/charts/winemeup/Chart.yaml")"
[ "$image" = "$repository:$app_version" ] || tags+=(-t "$repository:$app_version")
log "building $image"
DOCKER_BUILDKIT=1 docker build "${args[@]}" "${tags[@]}" "$repo"
if [ "${PUSH_IMAGE:-false}" = true ]; then docker push "$image"; fi
