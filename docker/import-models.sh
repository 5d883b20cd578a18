#!/bin/sh
# Imports exported BentoML models (`bentoml models export` archives) into $BENTOML_HOME/models
# and makes them readable by every user.
#   docker/import-models.sh BENTOML_BIN ARCHIVE [ARCHIVE ...]
#
# Why the chmod: `bentoml models import` unpacks each version into a directory made by
# tempfile.mkdtemp, which is mode 0700 and owned by whoever imports (root in an image build).
# The pods run as UID 10001, so without it a runner cannot read its own model.yaml and
# crash-loops. The runner and router Dockerfiles, the chart's model-fetch init container and
# tests/chart/test_chart_readonly_runner.py all call this one script.
set -eu
bentoml="${1:?usage: import-models.sh BENTOML_BIN ARCHIVE [ARCHIVE ...]}"
shift
[ "$#" -gt 0 ] || { echo "import-models.sh: no archive given" >&2; exit 2; }
: "${BENTOML_HOME:?BENTOML_HOME must name the model store}"
for archive in "$@"; do
  "$bentoml" models import "$archive"
done
chmod -R a+rX "$BENTOML_HOME/models"
"$bentoml" models list
