#!/usr/bin/env bash
# Builds one WineMeUp image, context = the repository root, with docker (BuildKit) where a
# daemon answers, else podman (k8s/lib.sh `need_engine`):
#   k8s/build-image.sh router|router-models|ui|operator   [image:tag]
#   k8s/build-image.sh runner <model>                      [image:tag]
# The image name defaults to $IMAGE (set by skaffold's custom builder), else
# winemeup-<what>:<tag>, the tag being $IMAGE_TAG or this checkout's (k8s/lib.sh image_tag);
# it is also tagged <repository>:<appVersion>, the tag the plain manifests in k8s/manifests/
# use. Runner and router-models images need the models exported first (k8s/export-models.sh,
# which reads $BENTOML_HOME); this script exports them when missing or older than the store.
#
# Environment:
#   PYTHON_IMAGE   base image (build argument of every Dockerfile; default
#                  python:3.11-slim-bookworm). Without a registry, make a local one with
#                  scripts/make-base-image.sh (scripts/build-images.sh picks it by itself).
#   RUNNER_LOCK    runner images only: the lock to install instead of the model's framework lock
#                  (runner-accelerated: ONNX only, no framework fallback).
#   BUILD_FLAGS    more options for the engine's build command (e.g. --no-cache).
#   PIP_CA_BUNDLE  a CA bundle for pip inside the build (a TLS-intercepting proxy), passed as
#                  the build secret pip-ca: mounted for the install step only, never in a layer.
#                  Default: /etc/ssl/certs/ca-certificates.crt when it exists; "none" passes none.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
need_engine
what="${1:?router|router-models|ui|operator|runner}"
tag="$(image_tag)"
case "$what" in
  runner)
    model="${2:?runner needs a model name}"
    image="${3:-${IMAGE:-winemeup-runner-$(slug "$model"):$tag}}"
    if export_is_stale "$model"; then bash "$repo/k8s/export-models.sh" "$model"; fi
    dockerfile="$repo/docker/runner.Dockerfile"
    args=(--build-arg "MODEL=$model" --build-arg "APP_OWNER=${APP_OWNER:-0}")
    # RUNNER_LOCK=runner-accelerated: the ONNX-only runner (docker/runner.Dockerfile).
    if [ -n "${RUNNER_LOCK:-}" ]; then args+=(--build-arg "RUNNER_LOCK=$RUNNER_LOCK"); fi
    ;;
  router | router-models)
    image="${2:-${IMAGE:-winemeup-$what:$tag}}"
    if [ "$what" = router-models ]; then
      for model in "${MODELS[@]}"; do
        if export_is_stale "$model"; then bash "$repo/k8s/export-models.sh" "$model"; fi
      done
    fi
    dockerfile="$repo/docker/router.Dockerfile"
    args=(--target "$what" --build-arg "APP_OWNER=${APP_OWNER:-0}")
    ;;
  ui | operator)
    image="${2:-${IMAGE:-winemeup-$what:$tag}}"
    dockerfile="$repo/docker/$what.Dockerfile"
    args=(--build-arg "APP_OWNER=${APP_OWNER:-0}")
    ;;
  *) log "unknown image $what"; exit 2 ;;
esac
args=(-f "$dockerfile" "${args[@]}")

base="${PYTHON_IMAGE:-python:3.11-slim-bookworm}"
args+=(--build-arg "PYTHON_IMAGE=$base")
if ! image_present "$base" && ! run_engine pull --quiet "$base" >/dev/null 2>&1; then
  log "base image $base is not here and cannot be pulled: set the build argument PYTHON_IMAGE"
  log "(environment PYTHON_IMAGE=...) to a Python 3.11 image you have, or make a local one with"
  log "scripts/make-base-image.sh and build with PYTHON_IMAGE=localhost/winemeup-python:3.11-bookworm"
  exit 1
fi

ca="${PIP_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
if [ "$ca" != none ] && [ -s "$ca" ]; then args+=(--secret "id=pip-ca,src=$ca"); fi
if [ "$ENGINE" = podman ]; then
  # Docker format keeps the HEALTHCHECK (OCI drops it); podman needs the Dockerfile's own
  # ignore file named (docker finds <Dockerfile>.dockerignore by itself).
  args+=(--format docker --ignorefile "$dockerfile.dockerignore")
fi

# Also tag the chart's appVersion (winemeup-router:0.1.0, ...): the plain manifests in
# k8s/manifests/ name images by it, and a checked-in file cannot know the commit.
tags=(-t "$image")
repository="${image%:*}"
app_version="$(awk '/^appVersion:/ {gsub(/"/, "", $2); print $2}' "$repo/charts/winemeup/Chart.yaml")"
[ "$image" = "$repository:$app_version" ] || tags+=(-t "$repository:$app_version")
log "building $image with $ENGINE on $base"
# BUILD_FLAGS: more options for the engine's build, word-split (e.g. --no-cache, --pull).
# shellcheck disable=SC2086
DOCKER_BUILDKIT=1 run_engine build ${BUILD_FLAGS:-} "${args[@]}" "${tags[@]}" "$repo"
if [ "${PUSH_IMAGE:-false}" = true ]; then run_engine push "$image"; fi
