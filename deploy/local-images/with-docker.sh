#!/usr/bin/env bash
# Run a command with a Docker engine (make test-deploy): install Debian's engine and debootstrap when
# missing, Compose v2 when `docker compose` is missing (install-compose.sh), start dockerd when none
# answers, run the command, and stop the dockerd this script started.
set -euo pipefail
SUDO=$( [ "$(id -u)" = 0 ] || echo sudo )
missing=""
command -v dockerd >/dev/null 2>&1 || missing="$missing docker.io"
command -v debootstrap >/dev/null 2>&1 || missing="$missing debootstrap"
if [ -n "$missing" ]; then
  echo "installing:$missing"
  $SUDO apt-get update -qq && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
started=""
if ! docker info >/dev/null 2>&1; then
  echo "starting dockerd (log: /tmp/entity-etl-dockerd.log)"
  $SUDO sh -c 'dockerd > /tmp/entity-etl-dockerd.log 2>&1 & echo $! > /tmp/entity-etl-dockerd.pid'
  started=$(cat /tmp/entity-etl-dockerd.pid)
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { echo "dockerd did not start:"; tail -20 /tmp/entity-etl-dockerd.log; exit 1; }
fi
stop() {
  if [ -n "$started" ]; then
    echo "stopping the dockerd this run started (pid $started)"
    $SUDO kill "$started" 2>/dev/null || true
    for _ in $(seq 1 30); do $SUDO kill -0 "$started" 2>/dev/null || break; sleep 1; done
  fi
}
trap stop EXIT
"$(dirname "$0")/install-compose.sh"
"$@"
