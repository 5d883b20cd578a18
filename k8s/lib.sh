# Shared by the k8s/*.sh scripts: paths, tools, pinned versions, logging.
# shellcheck shell=bash
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export PATH="$repo/.tools/bin:$PATH"
# shellcheck source=k8s/versions.env
source "$repo/k8s/versions.env"
CLUSTER="${WINEMEUP_KIND_CLUSTER:-winemeup}"
NAMESPACE="${WINEMEUP_NAMESPACE:-winemeup}"
RELEASE="${WINEMEUP_RELEASE:-winemeup}"
MODELS=(lightgbm xgboost catboost random_forest extra_trees hist_gradient_boosting svr)
export BENTOML_DO_NOT_TRACK=True
export BENTOML_HOME="${BENTOML_HOME:-$repo/.bentoml}"

log() { echo "[$(basename "$0")] $*" >&2; }
need() {
  local tool
  for tool in "$@"; do
    command -v "$tool" >/dev/null 2>&1 || { log "needs $tool on PATH"; exit 1; }
  done
}
# Image tag of this checkout: the chart's appVersion plus the commit. With uncommitted changes
# or untracked files (outside build/ and ignored paths) it adds a hash of them, so every edit
# gets its own tag and `IfNotPresent` can never keep a pod on an older build of the same commit.
# IMAGE_TAG, when set, is used as it is (a fixed tag such as `e2e`, for runs that must not
# follow the edits of a shared checkout).
image_tag() {
  local version sha dirty
  if [ -n "${IMAGE_TAG:-}" ]; then echo "$IMAGE_TAG"; return; fi
  version="$(awk '/^appVersion:/ {gsub(/"/, "", $2); print $2}' "$repo/charts/winemeup/Chart.yaml")"
  sha="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo local)"
  dirty="$(cd "$repo" && { git diff HEAD --binary 2>/dev/null
    git ls-files --others --exclude-standard -z 2>/dev/null | grep -zv '^build/' | xargs -0r sha256sum
  } | sha256sum | cut -c1-10)"
  if [ -n "$(cd "$repo" && git status --porcelain --untracked-files=normal 2>/dev/null | grep -v ' build/')" ]; then
    sha="$sha-dirty-$dirty"
  fi
  echo "$version-$sha"
}
# A stopped Docker daemon makes `kind create` fail with a confusing message: say it plainly.
need_docker_daemon() {
  docker info >/dev/null 2>&1 || {
    log "the docker CLI is installed but its daemon does not answer (is Docker running? try: docker info)"
    exit 1
  }
}
# kind older than KIND_MIN_VERSION cannot run the pinned node image.
need_kind_version() {
  local have
  have="$(kind version 2>/dev/null | sed -n 's/^kind v\([0-9.]*\).*/\1/p')"
  if [ -z "$have" ] || [ "$(printf '%s\n%s\n' "$KIND_MIN_VERSION" "$have" | sort -V | head -1)" != "$KIND_MIN_VERSION" ]; then
    log "needs kind v$KIND_MIN_VERSION or newer for $KIND_NODE_IMAGE (found: ${have:-none})"
    exit 1
  fi
}
slug() { echo "${1//_/-}"; }
# Whether build/model-store/<model>.bentomodel must be (re)exported: it is missing, or the model
# store holds a version saved after it (a retrained model), not only when the archive is absent.
export_is_stale() {
  local archive="$repo/build/model-store/$1.bentomodel" store="$BENTOML_HOME/models/$1"
  [ -f "$archive" ] || return 0
  [ -d "$store" ] && [ -n "$(find "$store" -newer "$archive" -name model.yaml -print -quit)" ]
}

# ---- container engine: docker where a daemon answers, else podman --------------------------------
# `engine` prints the engine to use (docker|podman), or nothing when none can run here.
# WINEMEUP_ENGINE=docker|podman forces one. Podman reads k8s/podman/containers.conf (runc, the
# cgroupfs manager, capped ulimits) unless CONTAINERS_CONF is already set.
engine() {
  case "${WINEMEUP_ENGINE:-}" in
    docker | podman) echo "$WINEMEUP_ENGINE"; return ;;
    "") ;;
    *) log "WINEMEUP_ENGINE=$WINEMEUP_ENGINE: expected docker or podman"; return 1 ;;
  esac
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    echo docker
  elif command -v podman >/dev/null 2>&1; then
    echo podman
  fi
}
# `need_engine` sets ENGINE (docker|podman) or exits saying what is missing.
need_engine() {
  ENGINE="$(engine)"
  case "$ENGINE" in
    docker) ;;
    podman)
      export CONTAINERS_CONF="${CONTAINERS_CONF:-$repo/k8s/podman/containers.conf}"
      if [ "$(id -u)" != 0 ] && ! podman info >/dev/null 2>&1; then
        log "podman is installed but cannot run as $(id -un) (not root, and rootless podman is not set up: see podman info); run as root or start a Docker daemon"
        exit 1
      fi
      podman info >/dev/null 2>&1 || {
        log "podman is installed but does not work here (podman info fails; CONTAINERS_CONF=$CONTAINERS_CONF)"
        exit 1
      }
      ;;
    *)
      if command -v docker >/dev/null 2>&1; then
        log "no container engine: the docker CLI is installed but its daemon does not answer (try: docker info), and podman is not installed (Debian: apt-get install podman runc)"
      else
        log "no container engine: neither docker nor podman is installed (Debian: apt-get install podman runc, as root)"
      fi
      exit 1
      ;;
  esac
  export ENGINE
}
# The engine's command line: `run_engine build ...` (ENGINE set by need_engine).
run_engine() { "$ENGINE" "$@"; }
# Whether the engine holds image $1 locally.
image_present() { run_engine image inspect "$1" >/dev/null 2>&1; }
