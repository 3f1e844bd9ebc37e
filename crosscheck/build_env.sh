#!/usr/bin/env bash
# Build the cross-check environment: aihwkit 1.2.0 from its PyPI sdist (CPU, ~7+ minutes on 2 cores) plus ferrolib.
# Usage: crosscheck/build_env.sh VENV   (make crosscheck uses .crosscheck-venv, ignored by git). An environment that
# already imports aihwkit 1.2.0 is kept; only this checkout's ferrolib is (re)installed into it, editable.
# A plain `pip install aihwkit` pulls torchvision, which replaces the CPU torch with a CUDA build, and its isolated
# build cannot find torch; hence torch first, then the sdist without build isolation. Needs libopenblas-dev.
set -euo pipefail
# absolute: the sdist builds in a temporary folder, where a relative "$VENV/bin" on PATH finds no stubgen
VENV=$(realpath -m "${1:?usage: build_env.sh VENV}")
PYTHON=${PYTHON:-python3.11}
if "$VENV/bin/python" -c 'import sys, aihwkit; sys.exit(aihwkit.__version__ != "1.2.0")' 2>/dev/null; then
  echo "build_env.sh: $VENV already has aihwkit 1.2.0: installing this checkout's ferrolib only"
  "$VENV/bin/pip" install --quiet -e '.[test]'
  exit 0
fi
# (find, not ls: ls of two paths fails when either is missing, and Debian keeps cblas.h under a multiarch folder)
if [ -z "$(find /usr/include -maxdepth 2 -name cblas.h -print -quit)" ]; then
  echo "build_env.sh: OpenBLAS headers missing: install libopenblas-dev (apt-get install -y libopenblas-dev)" >&2
  exit 1
fi
test -x "$VENV/bin/python" || "$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip
"$VENV/bin/pip" install --quiet torch==2.13.0
"$VENV/bin/pip" install --quiet "setuptools>=77" wheel "scikit-build>=0.18.1" "pybind11>=3.0.1" ninja \
  "cmake>=4.2.1" mypy numpy scipy "requests>=2.32,<3" protobuf tqdm scikit-learn
"$VENV/bin/pip" download --quiet --no-deps aihwkit==1.2.0 -d "$VENV/sdist"
VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2} \
  nice -n 10 "$VENV/bin/pip" install --no-build-isolation --no-deps "$VENV/sdist/aihwkit-1.2.0.tar.gz"
"$VENV/bin/pip" install --quiet -e '.[test]'
