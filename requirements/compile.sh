#!/usr/bin/env bash
# Re-pins every lock in requirements/ from its .in file (`make lock`).
#
# dev.lock is compiled first, keeping the versions it already pins unless a .in file asks for
# others (uv prefers the existing pins of its output file; pass --upgrade to lift them). Every
# other lock is then compiled with dev.lock as a constraint, so a package has the same version
# in each image and in the dev venv. xgboost-cpu (the runner images' xgboost, without NVIDIA
# NCCL) is not in dev.lock, which has the full xgboost: it is held to the same version.
# The serving locks that contain CatBoost leave out its plotting libraries
# (serving-overrides.txt); install every lock with `pip install --no-deps -r` (the locks are
# complete, and --no-deps keeps pip from adding what a lock leaves out on purpose).
#
# The locks are resolved for Python 3.11 (the images' base, python:3.11-slim-bookworm) and
# --universal, with environment markers, so that `make venv` also works on macOS and Linux arm64.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"
uv="${UV:-$repo/.venv/bin/uv}"
command -v "$uv" >/dev/null 2>&1 || uv=uv
cd "$here"

compile() {  # compile NAME [extra uv args...]
  local name="$1"; shift
  "$uv" pip compile --quiet --universal --python-version 3.11 --no-strip-extras --generate-hashes \
    --custom-compile-command "requirements/compile.sh" \
    "$@" "$name.in" -o "$name.lock"
}

compile dev "$@"
xgb="$(sed -n 's/^xgboost==\([^ ;]*\).*/\1/p' dev.lock | head -1)"
[ -n "$xgb" ] || { echo "compile.sh: no xgboost pin in dev.lock" >&2; exit 1; }
cpu_constraint="$(mktemp)"
trap 'rm -f "$cpu_constraint"' EXIT
echo "xgboost-cpu==$xgb" > "$cpu_constraint"
for in_file in *.in; do
  name="${in_file%.in}"
  extra=()
  case "$name" in
    dev) continue ;;
    runner-catboost|router-models) extra=(--override serving-overrides.txt) ;;
  esac
  compile "$name" -c dev.lock -c "$cpu_constraint" "${extra[@]}"
done
echo "compile.sh: pinned $(ls ./*.lock | wc -l) locks against dev.lock (xgboost-cpu==$xgb)"
