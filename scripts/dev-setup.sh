#!/bin/sh
# Everything a fresh Debian machine needs to run callbridge, its demo and its whole test suite:
# a virtual environment in .venv with callbridge and its dev tools, and Debian's chromium for the
# dashboard's browser tests (from the OS packages: the tests never download a browser).
set -eu
cd "$(dirname "$0")/.."

if [ ! -x /usr/bin/chromium ]; then
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "dev-setup: install chromium at /usr/bin/chromium with your OS's packages" >&2
        exit 1
    fi
    # Root installs directly; anyone else goes through sudo.
    if [ "$(id -u)" -eq 0 ]; then sudo=""; else sudo="sudo"; fi
    echo "dev-setup: installing chromium from the OS packages"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"
echo "dev-setup: ready (. .venv/bin/activate)"
