#!/bin/sh
# Removes from a virtual environment what no image runs, after its lock is installed:
#   docker/prune-venv.sh /opt/venv
# - every package's `tests` directory (pandas 46 MB, scipy, numpy, pyarrow, scikit-learn ...);
#   nothing imports them outside their own test runs;
# - pyarrow's C++ headers and Cython sources (for building extensions against it);
# - pydeck's Jupyter notebook extension (23 MB of JavaScript; Streamlit draws pydeck maps
#   with its own front end);
# - pip and setuptools: nothing installs at run time (the import check in tests/images runs
#   the same locks in environments that never had either).
# The images' smoke check (scripts/smoke-images.sh) runs each image after this.
set -eu
venv="${1:?usage: prune-venv.sh VENV}"
site="$(echo "$venv"/lib/python3*/site-packages)"
[ -d "$site" ] || { echo "prune-venv.sh: no site-packages under $venv" >&2; exit 2; }
before=$(du -sk "$venv" | cut -f1)
find "$site" -mindepth 2 -type d -name tests -prune -exec rm -rf {} +
rm -rf "$site/pyarrow/include" "$site/pyarrow/src" "$site/pydeck/nbextension"
find "$site/pyarrow" -name '*.pyx' -delete -o -name '*.pxd' -delete 2>/dev/null || true
"$venv/bin/python" -m pip uninstall --quiet --yes setuptools pip
echo "prune-venv.sh: $venv $(( before / 1024 )) MB -> $(( $(du -sk "$venv" | cut -f1) / 1024 )) MB" >&2
