#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A short demo of slirpy, entirely inside namespaces this script creates.
#
# An outer user+network namespace plays the host: only its loopback exists, so
# nothing can reach a real network. A web server runs on the host's loopback,
# then `slirpy -p 127.0.0.1:8081:80 -- sh -c '...'` makes a new namespace with
# a network for a command, which
#   1. fetches the host's page through the gateway, http://10.0.2.2:8080/, and
#   2. serves a page of its own on port 80, which the host fetches through the
#      port slirpy publishes, http://127.0.0.1:8081/.
# Exits non-zero if either fetch fails.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
py=${PYTHON:-/opt/slirpy-venv/bin/python}
[ -x "$py" ] || py=$(command -v python3)
slirpy=${SLIRPY:-$(command -v slirpy || echo /opt/slirpy-venv/bin/slirpy)}

if [ "${1:-}" != "--inside" ]; then
  exec unshare --user --map-root-user --net --mount --pid --fork --kill-child --mount-proc \
    bash "$0" --inside
fi

# `slirpy -- COMMAND` needs a slirpy that has it; an older installed copy is
# replaced by this checkout's (scripts/install.sh updates the installed one).
run_slirpy=("$slirpy")
if ! "$slirpy" --help 2>/dev/null | grep -q -e '-- \[COMMAND'; then
  if [ ! -f "$here/slirpy/run.py" ]; then
    echo "$slirpy cannot run a command (slirpy -- COMMAND): run scripts/install.sh" >&2
    exit 1
  fi
  echo "note: $slirpy cannot run a command yet; using the slirpy of $here" \
    "(scripts/install.sh installs it)" >&2
  run_slirpy=(env "PYTHONPATH=$here" "$py" -m slirpy)
fi

ip link set lo up
work=$(mktemp -d)
chmod 755 "$work"
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir "$work/host" "$work/ns"
echo "Hello from the host's loopback (127.0.0.1:8080), $(date -u +%FT%TZ)" \
  > "$work/host/index.html"
echo "Hello from inside slirpy's namespace (its port 80)" > "$work/ns/index.html"
"$py" -m http.server 8080 --bind 127.0.0.1 --directory "$work/host" >/dev/null 2>&1 &
for _ in $(seq 100); do
  curl --silent --output /dev/null http://127.0.0.1:8080/ && break
  sleep 0.1
done

# The command, in the new namespace: $1 is the work directory, $2 Python.
command='
work=$1 py=$2
echo "--- the new namespace (made by slirpy):"
ip -brief address show dev tap0
ip route show default
echo
echo "=== 1. inside the namespace: curl http://10.0.2.2:8080/ (the host'\''s loopback)"
fetched=0
curl --silent --show-error --fail --max-time 10 http://10.0.2.2:8080/ || fetched=1
"$py" -m http.server 80 --bind 0.0.0.0 --directory "$work/ns" >/dev/null 2>&1 &
i=0
until curl --silent --output /dev/null http://127.0.0.1:80/ || [ $i -ge 100 ]; do
  i=$((i + 1)); sleep 0.1
done
touch "$work/serving"
i=0
until [ -e "$work/done" ] || [ $i -ge 300 ]; do i=$((i + 1)); sleep 0.1; done
kill $! 2>/dev/null
exit $fetched
'
"${run_slirpy[@]}" -p 127.0.0.1:8081:80 -- sh -c "$command" demo "$work" "$py" &
slirpy_pid=$!
for _ in $(seq 300); do
  [ -e "$work/serving" ] && break
  kill -0 "$slirpy_pid" 2>/dev/null || break
  sleep 0.1
done

echo
echo "=== 2. on the host: curl http://127.0.0.1:8081/ (published to port 80 inside)"
outside=0
curl --silent --show-error --fail --max-time 10 http://127.0.0.1:8081/ || outside=1
touch "$work/done"
inside=0
wait "$slirpy_pid" || inside=$?

echo
echo "=== results"
if [ "$inside" -eq 0 ]; then
  echo "1. namespace -> host loopback (10.0.2.2:8080):  OK"
else
  echo "1. namespace -> host loopback (10.0.2.2:8080):  FAILED (exit $inside)"
fi
if [ "$outside" -eq 0 ]; then
  echo "2. host -> namespace (127.0.0.1:8081 -> 80):    OK"
else
  echo "2. host -> namespace (127.0.0.1:8081 -> 80):    FAILED"
fi
[ "$inside" -eq 0 ] && [ "$outside" -eq 0 ] && exit 0
exit 1
