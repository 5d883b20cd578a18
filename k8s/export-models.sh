#!/usr/bin/env bash
# Exports models from the BentoML model store ($BENTOML_HOME, default .bentoml) into
# build/model-store/<model>.bentomodel (or $WINEMEUP_MODEL_EXPORT_DIR), where the runner and
# router-models images pick them up.
#   k8s/export-models.sh [model ...]     (default: all seven)
# Train first when the store is empty: make train-fast (or make train).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bentoml="$repo/.venv/bin/bentoml"
[ -x "$bentoml" ] || { log "no $bentoml: run make venv"; exit 1; }
out_dir="${WINEMEUP_MODEL_EXPORT_DIR:-$repo/build/model-store}"
mkdir -p "$out_dir"
models=("$@")
[ ${#models[@]} -gt 0 ] || models=("${MODELS[@]}")
for model in "${models[@]}"; do
  out="$out_dir/$model.bentomodel"
  if ! "$bentoml" models get "$model:latest" >/dev/null 2>&1; then
    log "model $model is not in the store at $BENTOML_HOME: run make train-fast first"
    exit 1
  fi
  rm -f "$out"
  "$bentoml" models export "$model:latest" "$out" >/dev/null
  log "exported $model:latest -> $out"
done
