#!/usr/bin/env bash
# A short demo of slirpy, entirely inside namespaces this script creates:
# an outer user+network namespace plays the host (only its loopback exists),
# a container namespace inside it gets its network from slirpy, and a command
# in the container fetches a page from a web server on the host's loopback
# through the gateway address 10.0.2.2.
set -euo pipefail
slirpy=${SLIRPY:-$(command -v slirpy || echo /opt/slirpy-venv/bin/slirpy)}
py=${PYTHON:-/opt/slirpy-venv/bin/python}

if [ "${1:-}" != "--inside" ]; then
  exec unshare --user --map-root-user --net --mount --pid --fork --kill-child --mount-proc \
    bash "$0" --inside
fi

ip link set lo up
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
echo "Hello from the host's loopback, served at $(date -u +%FT%TZ)" > "$work/index.html"
"$py" -m http.server 8080 --bind 127.0.0.1 --directory "$work" >/dev/null 2>&1 &

# The container: a new user and network namespace with only a loopback.
unshare --user --map-root-user --net sleep 120 &
container=$!

mkfifo "$work/ready"
"$slirpy" --configure --ready-fd 3 "$container" tap0 3>"$work/ready" &
slirpy_pid=$!
read -r -n 1 -t 10 ready < "$work/ready" || { echo "slirpy did not start" >&2; exit 1; }
echo "slirpy (pid $slirpy_pid) is ready: $ready"

in_container() { nsenter --target "$container" --user --net --preserve-credentials "$@"; }
echo "--- the container's network:"
in_container ip -brief address
in_container ip route
echo "--- curl http://10.0.2.2:8080/ from inside the container:"
in_container curl --silent --show-error --max-time 10 http://10.0.2.2:8080/
echo "--- ping the gateway:"
in_container ping -c 2 -W 2 10.0.2.2
kill "$slirpy_pid"
wait "$slirpy_pid" || true
echo "--- done"
