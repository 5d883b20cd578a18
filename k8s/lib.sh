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
# Image tag of this checkout: the chart's appVersion plus the commit (and -dirty).
image_tag() {
  local version sha
  version="$(awk '/^appVersion:/ {gsub(/"/, "", $2); print $2}' "$repo/charts/winemeup/Chart.yaml")"
  sha="$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo local)"
  git -C "$repo" diff --quiet 2>/dev/null || sha="$sha-dirty"
  echo "$version-$sha"
}
slug() { echo "${1//_/-}"; }
