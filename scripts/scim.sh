#!/usr/bin/env bash
# Start, stop or query a real SCIM 2.0 service provider on loopback for the
# tests and benchmarks: scim2-server (PyPI), in memory, with a bearer token,
# installed into a virtual environment on first use. Each test works in a
# tenant of its own (`<url>/<tenant>`, created on first request).
#
#   scripts/scim.sh start    install if needed, start, wait until it answers
#   scripts/scim.sh stop     stop the server started by this script
#   scripts/scim.sh status   exit 0 if it answers
#
# Environment:
#   SCIM_VERSION   (default 0.8.3)  the scim2-server release
#   SCIM_HOME_DIR  (default .scim in the repository) the virtual environment, log, pid
#   SCIM_PORT      (default 18080)  the port on 127.0.0.1
#   SCIM_TOKEN     (default a fixed test token) the bearer token it accepts
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
version="${SCIM_VERSION:-0.8.3}"
home="${SCIM_HOME_DIR:-$here/.scim}"
port="${SCIM_PORT:-18080}"
token="${SCIM_TOKEN:-hr-sync-test-token-for-the-scim-provider-0001}"
venv="$home/venv-$version"
pidfile="$home/scim-$port.pid"
log="$home/scim-$port.log"

answers() {
  curl -sf -o /dev/null -H "Authorization: Bearer $token" "http://127.0.0.1:$port/ServiceProviderConfig"
}

install() {
  [ -x "$venv/bin/scim2-server" ] && return
  mkdir -p "$home"
  echo "scim.sh: installing scim2-server $version into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "scim2-server==$version"
}

case "${1:-}" in
  start)
    if answers; then echo "scim.sh: already answering on 127.0.0.1:$port" >&2; exit 0; fi
    install
    nohup "$venv/bin/scim2-server" --hostname 127.0.0.1 --port "$port" --bearer-token "$token" --dynamic-tenants >"$log" 2>&1 &
    echo $! >"$pidfile"
    for _ in $(seq 1 100); do
      if answers; then echo "scim.sh: ready on 127.0.0.1:$port" >&2; exit 0; fi
      kill -0 "$(cat "$pidfile")" 2>/dev/null || { echo "scim.sh: the server exited; see $log" >&2; tail -20 "$log" >&2; exit 1; }
      sleep 0.2
    done
    echo "scim.sh: no answer on 127.0.0.1:$port after 20 s; see $log" >&2
    exit 1
    ;;
  stop)
    if [ -f "$pidfile" ]; then
      pid="$(cat "$pidfile")"
      # A PID file can outlive its server (a reboot, a restored snapshot) and name another process by then.
      if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "--port $port"; then kill "$pid" 2>/dev/null || true; fi
      rm -f "$pidfile"
      echo "scim.sh: stopped" >&2
    fi
    ;;
  status) answers ;;
  *) echo "usage: scripts/scim.sh start|stop|status" >&2; exit 2 ;;
esac
