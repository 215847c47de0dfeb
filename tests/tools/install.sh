#!/usr/bin/env bash
# Installs the field tools the test suite drives, so that no test skips for want of them:
#   - s3rver (npm) for the object-storage tests: a real S3 server on loopback;
#   - Xvfb and the X libraries Qt needs, and Debian's Chromium, for the napari canvas and
#     the live page in a real browser;
#   - napari in a venv of its own (tests/.napari-venv): its npe2 pytest plugin does not
#     load under this suite's filterwarnings=error, so it never enters the test venv.
# (The Bio-Formats jar is fetched by the tests themselves, see tests/_bioformats.py.)
# Each step is skipped when its tool is already there, and a step that cannot run here
# (no npm, not root) says so: the tests that need it then skip with the same hint.
set -uo pipefail
cd "$(dirname "$0")/../.."

if command -v npm >/dev/null 2>&1; then
  [ -x tests/.s3rver/node_modules/.bin/s3rver ] \
    || npm install --silent --no-audit --no-fund --prefix tests/.s3rver s3rver@3.7.1 \
    || echo "install.sh: could not install s3rver: the object-storage tests will skip" >&2
else
  echo "install.sh: no npm (Node.js): the object-storage tests will skip" >&2
fi

if ! command -v xvfb-run >/dev/null 2>&1 || ! ldconfig -p | grep -q libxcb-icccm.so.4 \
    || ! command -v chromium >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q xvfb xauth \
        libgl1 libegl1 libxkbcommon-x11-0 libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 \
        libxcb-image0 libxcb-render-util0 chromium; } >/dev/null \
      || echo "install.sh: could not install Xvfb/Chromium: napari and browser tests will skip" >&2
  else
    echo "install.sh: Xvfb/Chromium missing and not root: napari and browser tests will skip" >&2
  fi
fi

if [ ! -x tests/.napari-venv/bin/python ]; then
  { python3 -m venv tests/.napari-venv && tests/.napari-venv/bin/pip install -q \
      --disable-pip-version-check napari==0.9.2 napari-ome-zarr==0.10.0 PyQt5==5.15.11 \
      >tests/.napari-install.log 2>&1; } \
    || { echo "install.sh: could not install napari: the napari tests will skip" >&2
         rm -rf tests/.napari-venv; }
fi

exit 0
