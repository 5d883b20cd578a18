#!/usr/bin/env bash
# Measures the installed size of each deployable's environment (`make env-sizes`): for every
# lock in requirements/ (or the names given, e.g. `router ui`), it builds a fresh virtual
# environment under a temporary directory with Python 3.11 (the version the locks are resolved
# on and the images run), installs that lock as the Dockerfiles do (pip in the venv, bytecode
# compiled, --no-deps: the locks are complete), checks that the deployable's top-level imports
# work, and prints `du` of the whole venv with the largest packages and the budget from issue 8.
# Prints Markdown on stdout (`make env-sizes` writes it to docs/env-sizes.md); progress goes to
# stderr.
#
#   scripts/env-sizes.sh                 all locks
#   scripts/env-sizes.sh router ui       only these
#   KEEP_DIR=/tmp/envs scripts/env-sizes.sh runner-xgboost    keep the venvs there
#
# It installs with uv (same wheels, same files as pip, --compile-bytecode like pip's default,
# and a cache that makes reruns fast); INSTALLER=pip uses the venv's own pip instead. Needs
# network access to PyPI (or a warm cache). Slow (minutes): not part of `make test`.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3.11}"
installer="${INSTALLER:-uv}"
uv="${UV:-$repo/.venv/bin/uv}"
command -v "$uv" >/dev/null 2>&1 || uv=uv

log() { echo "env-sizes: $*" >&2; }

"$python" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null \
  || { log "$python is not Python 3.11 (the locks are resolved on 3.11); set PYTHON=..."; exit 2; }
if [ "$installer" = uv ] && ! command -v "$uv" >/dev/null 2>&1; then
  log "uv not found (make venv installs it); falling back to pip"
  installer=pip
fi

# Budgets from issue 8 ("Environment size (fresh venv)"); locks without one print "-".
declare -A budget_mb=(
  [router]=300
  [runner-accelerated]=400
  [runner-lightgbm]=700
  [runner-xgboost]=700
  [runner-catboost]=700
  [runner-sklearn]=700
  [ui]=300
)

# What each environment must import (a lock that leaves out too much fails here, not in a pod).
# A coarse list: tests/images imports each image's real entry point from its lock in `make test`.
declare -A imports_of=(
  [router]="starlette uvicorn orjson aiohttp redis hiredis prometheus_client pydantic_settings numpy onnxruntime yaml"
  [runner-accelerated]="bentoml onnxruntime numpy pydantic_settings yaml orjson"
  [runner-lightgbm]="bentoml onnxruntime lightgbm orjson"
  [runner-xgboost]="bentoml onnxruntime xgboost sklearn orjson"
  [runner-catboost]="bentoml onnxruntime catboost orjson"
  [runner-sklearn]="bentoml onnxruntime sklearn orjson"
  [router-models]="starlette uvicorn redis onnxruntime bentoml lightgbm xgboost catboost sklearn"
  [ui]="streamlit httpx pandas altair pydantic_settings yaml"
  [training]="bentoml lightgbm xgboost catboost sklearn skl2onnx onnxmltools onnx onnxruntime optuna matplotlib tqdm"
  [dev]="bentoml lightgbm xgboost catboost sklearn skl2onnx onnxmltools onnxruntime streamlit pytest ruff mypy playwright fastapi kubernetes_validate tritonclient.http schemathesis"
)
# Libraries an environment must not contain (issue 8: serving without test tools, the UI without
# ML libraries, the router without BentoML or a framework).
declare -A absent_of=(
  [router]="bentoml lightgbm xgboost catboost sklearn pytest"
  [runner-accelerated]="lightgbm xgboost catboost sklearn pytest"
  [ui]="bentoml lightgbm xgboost catboost sklearn onnxruntime pytest"
)

names=("$@")
if [ ${#names[@]} -eq 0 ]; then
  for lock in "$repo"/requirements/*.lock; do names+=("$(basename "$lock" .lock)"); done
fi

if [ -n "${KEEP_DIR:-}" ]; then
  work="$KEEP_DIR"
  mkdir -p "$work"
else
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
fi

cat <<HEADER
# Environment sizes

Installed size of a fresh virtual environment built from each lock in \`requirements/\`, with
$("$python" -VV | head -1 | cut -d' ' -f1-2) on $(uname -sm), $(date -u +%Y-%m-%d), by \`make env-sizes\`
(\`scripts/env-sizes.sh\`): \`python -m venv\` (pip and setuptools included), then the lock
installed with \`--no-deps\` and bytecode compiled, as the Dockerfiles do; the size is \`du\` of the
whole venv. Budgets are issue 8's. The lock layout is described in \`requirements/README.md\`.

HEADER
echo "| environment | lock pins | installed size (MB) | budget (MB) | verdict | largest packages (MB) |"
echo "|---|---:|---:|---:|---|---|"
failed=0
for name in "${names[@]}"; do
  lock="$repo/requirements/$name.lock"
  [ -f "$lock" ] || { log "no such lock: $lock"; failed=1; continue; }
  venv="$work/$name"
  rm -rf "$venv"
  log "$name: building a fresh venv in $venv"
  started=$(date +%s)
  "$python" -m venv "$venv"
  if [ "$installer" = uv ]; then
    "$uv" pip install --quiet --python "$venv/bin/python" --compile-bytecode --no-deps -r "$lock" >&2
  else
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-cache-dir --no-deps -r "$lock" >&2
  fi
  check='import importlib, importlib.util, sys
bad = [m for m in sys.argv[1].split() if importlib.util.find_spec(m.split(".")[0]) is None]
for m in sys.argv[1].split():
    if m not in bad:
        try:
            importlib.import_module(m)
        except Exception as e:
            bad.append(f"{m} ({type(e).__name__}: {e})")
extra = [m for m in sys.argv[2].split() if importlib.util.find_spec(m) is not None]
if bad or extra:
    sys.exit(f"cannot import {bad}; should not contain {extra}")'
  if ! BENTOML_DO_NOT_TRACK=True BENTOML_HOME="$work/.bentoml" "$venv/bin/python" -c "$check" \
      "${imports_of[$name]:-}" "${absent_of[$name]:-}" >&2; then
    log "$name: the import check failed"
    failed=1
  fi
  size_mb=$(( $(du -sk "$venv" | cut -f1) / 1024 ))
  pins=$(grep '^[A-Za-z0-9].*==' "$lock" | grep -vc "sys_platform == 'never'")
  site="$(echo "$venv"/lib/python3.11/site-packages)"
  # The largest top-level entries, with the .libs directories auditwheel vendors counted
  # against the package they serve (numpy.libs with numpy).
  largest=$(du -sk "$site"/* 2>/dev/null \
    | awk '{n=$2; sub(".*/", "", n); sub("\\.libs$", "", n); sub("-[0-9].*\\.dist-info$", "", n); kb[n]+=$1}
           END {for (n in kb) printf "%d %s\n", kb[n]/1024, n}' \
    | sort -rn | head -5 | awk '{printf "%s%s %d", (NR>1 ? ", " : ""), $2, $1}')
  budget="${budget_mb[$name]:--}"
  verdict="-"
  if [ "$budget" != - ]; then
    if [ "$size_mb" -le "$budget" ]; then verdict="within"; else verdict="**over by $((size_mb - budget))**"; fi
  fi
  log "$name: ${size_mb} MB in $(( $(date +%s) - started ))s"
  echo "| $name | $pins | $size_mb | $budget | $verdict | $largest |"
done
exit $failed
