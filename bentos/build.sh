#!/usr/bin/env bash
# Build the seven runner bentos (winemeup-runner-<model>) into $BENTOML_HOME from its model
# store (`make bentos`). Extra arguments go to bentos/build.py, e.g. --models lightgbm,svr.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${BENTOML_HOME:=$PWD/.bentoml}"
export BENTOML_HOME BENTOML_DO_NOT_TRACK=True
exec "${PYTHON:-.venv/bin/python}" bentos/build.py "$@"
