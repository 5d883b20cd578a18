#!/usr/bin/env bash
# Prints the tag that k8s/build-image.sh (and so `make images`) gives this checkout's images.
set -euo pipefail
# shellcheck source=k8s/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../../k8s/lib.sh"
image_tag
