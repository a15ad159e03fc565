#!/bin/sh
# Debian ships venv support in a separate package (python3-venv); install it when it is missing.
set -eu
python=${1:-python3}
if "$python" -c "import ensurepip, venv" 2>/dev/null; then
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
  version=$("$python" -c 'import sys; print(f"{sys.version_info.major}.{sys.version_info.minor}")')
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "python${version}-venv" || \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
else
  echo "Python's venv module is missing: install python3-venv (as root: apt-get install python3-venv)" >&2
  exit 1
fi
