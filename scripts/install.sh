#!/usr/bin/env bash
# Install slirpy and what it needs on a fresh Debian machine (run as root).
#   scripts/install.sh          the daemon and the demo's tools
#   scripts/install.sh --test   the same, plus everything the test suite uses
# The virtual environment lives in /opt/slirpy-venv, made from the system
# interpreter so that every uid can run it (rootless runtimes run slirpy as a user).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
venv=${SLIRPY_VENV:-/opt/slirpy-venv}
with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1

debs=(python3 python3-venv python3-dev gcc python3-seccomp iproute2 util-linux curl)
if [ "$with_tests" = 1 ]; then
  debs+=(iperf3 socat ncat busybox slirp4netns passt tcpdump jq iputils-ping procps
         rootlesskit podman uidmap tshark groff-base man-db)
fi
missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

[ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
# --enable-seccomp uses libseccomp's own binding, which Debian builds for the
# system interpreter the venv runs: link that one module into the venv rather
# than let the venv see every system package.
seccomp_so=$(/usr/bin/python3 -c 'import seccomp; print(seccomp.__file__)')
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("platlib"))')
ln -sf "$seccomp_so" "$site/"
"$venv/bin/python" -m pip install -q --upgrade pip "setuptools>=77"
# The dependencies first (the core left uncompiled: it is replaced below).
if [ "$with_tests" = 1 ]; then
  SLIRPY_PURE=1 "$venv/bin/python" -m pip install -q "$here[test]"
else
  SLIRPY_PURE=1 "$venv/bin/python" -m pip install -q "$here"
fi
# The same version number may hide newer code: always install this tree, its
# core compiled by mypyc (see setup.py; SLIRPY_PURE=1 keeps it pure Python).
"$venv/bin/python" -m pip install -q --no-deps --force-reinstall "$here"
if [ "$with_tests" = 1 ]; then
  # The test suite runs this tree: compile its core in place too (and drop
  # an earlier build, which SLIRPY_PURE=1 leaves out).
  find "$here/slirpy" -name '*.so' -delete
  (cd "$here" && "$venv/bin/python" setup.py -q build_ext --inplace >/dev/null)
fi
chmod -R a+rX "$venv"
ln -sf "$venv/bin/slirpy" /usr/local/bin/slirpy
install -Dm644 "$here/docs/slirpy.1" /usr/local/share/man/man1/slirpy.1
echo "slirpy installed in $venv (and /usr/local/bin/slirpy)"
