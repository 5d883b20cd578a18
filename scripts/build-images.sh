#!/usr/bin/env bash
# `make images`: builds every image the chart uses, with docker where a daemon answers, else
# podman: router, router-models, one runner per model (seven), the UI and the operator, tagged as
# k8s/build-image.sh tags them (winemeup-<what>:<tag> plus :<appVersion>).
#
#   scripts/build-images.sh                      all of them
#   scripts/build-images.sh router ui runner-svr only these (router, router-models, ui, operator, runner-<model>)
#
# Environment:
#   IMAGE_TAG     the tag (default: this checkout's, k8s/lib.sh image_tag, which changes with
#                 every uncommitted edit; set e.g. IMAGE_TAG=e2e for a fixed one).
#   PYTHON_IMAGE  the base image. Unset: python:3.11-slim-bookworm when the engine has it or
#                 can pull it, else the local base scripts/make-base-image.sh makes (made here
#                 when missing). The script says which base it used.
#   PIP_CA_BUNDLE see k8s/build-image.sh.
# The images carry the models of the BentoML store at $BENTOML_HOME (default .bentoml): when a
# model is missing there, it trains them first (python -m training train --fast, about a
# minute), as a clean clone has none. Build times and sizes go to build/images-report.md.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../k8s/lib.sh"
need_engine

all=(router router-models ui operator)
for model in "${MODELS[@]}"; do all+=("runner-$(slug "$model")"); done
wanted=("$@")
[ ${#wanted[@]} -gt 0 ] || wanted=("${all[@]}")

official=python:3.11-slim-bookworm
local_base="${WINEMEUP_BASE_IMAGE:-localhost/winemeup-python:3.11-bookworm}"
if [ -n "${PYTHON_IMAGE:-}" ]; then
  base="$PYTHON_IMAGE"
  log "base image: $base (PYTHON_IMAGE)"
elif image_present "$official" || run_engine pull --quiet "$official" >/dev/null 2>&1; then
  base="$official"
  log "base image: $official"
else
  base="$local_base"
  if ! image_present "$base"; then
    log "$official cannot be pulled (no registry reachable): making the local base $base"
    bash "$repo/scripts/make-base-image.sh"
  fi
  log "base image: $base, the local stand-in made by scripts/make-base-image.sh ($official cannot be pulled)"
fi
export PYTHON_IMAGE="$base"

needs_models=false
for what in "${wanted[@]}"; do
  case "$what" in runner-* | router-models) needs_models=true ;; esac
done
if [ "$needs_models" = true ]; then
  missing=()
  for model in "${MODELS[@]}"; do
    [ -d "$BENTOML_HOME/models/$model" ] || missing+=("$model")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    [ -x "$repo/.venv/bin/python" ] || { log "no .venv: run make venv"; exit 1; }
    log "the model store $BENTOML_HOME lacks ${missing[*]}: training the seven models (fast mode)"
    (cd "$repo" && .venv/bin/python -m training train --fast --no-progress --model-store "$BENTOML_HOME")
  fi
fi

IMAGE_TAG="$(image_tag)"
export IMAGE_TAG
# The report is written whole at the end: another `make images` may run at the same time.
report="$repo/build/images-report.md"
mkdir -p "$repo/build"
table="$(mktemp)"
trap 'rm -f "$table"' EXIT
base_mb=$(( $(run_engine image inspect --format '{{.Size}}' "$base") / 1000000 ))
{
  echo "Built $(date -u +%Y-%m-%dT%H:%MZ) with $ENGINE on $base ($base_mb MB), tag $IMAGE_TAG"
  echo
  echo "| image | total (MB) | above base (MB) | build (s) |"
  echo "|---|---:|---:|---:|"
} > "$table"
for what in "${wanted[@]}"; do
  started=$(date +%s)
  case "$what" in
    router | router-models | ui | operator) bash "$repo/k8s/build-image.sh" "$what"; image="winemeup-$what:$IMAGE_TAG" ;;
    runner-*)
      model="${what#runner-}"; model="${model//-/_}"
      bash "$repo/k8s/build-image.sh" runner "$model"; image="winemeup-$what:$IMAGE_TAG" ;;
    *) log "unknown image $what (one of: ${all[*]})"; exit 2 ;;
  esac
  seconds=$(( $(date +%s) - started ))
  mb=$(( $(run_engine image inspect --format '{{.Size}}' "$image") / 1000000 ))
  echo "| $image | $mb | $(( mb - base_mb )) | $seconds |" >> "$table"
  log "$image: $mb MB ($(( mb - base_mb )) MB above the base), built in $seconds s"
done
cp "$table" "$report"
cat "$report" >&2
