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
image_tag() {
  local version sha dirty
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
