#!/usr/bin/env bash
# Stop the single-node Slurm cluster started by scripts/slurm_cluster_start.sh (its jobs too).
# Pass --purge to delete its directory (state, logs, config) as well.
set -euo pipefail

BASE=${RUNNER_SLURM_DIR:-/tmp/unlearn-runner-slurm}
export SLURM_CONF=$BASE/slurm.conf

stop() {  # pid file, name
    local pidfile=$1 pid
    [ -f "$pidfile" ] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        echo "slurm_cluster_stop: stopping $2 ($pid)" >&2
        kill "$pid"
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$pidfile"
}

if [ -f "$SLURM_CONF" ] && command -v scancel >/dev/null; then
    timeout 10 scancel --full --user="$(id -un)" >/dev/null 2>&1 || true
fi
stop "$BASE/slurmd.pid" slurmd
stop "$BASE/slurmctld.pid" slurmctld
stop "$BASE/munge/munged.pid" munged
if [ "${1:-}" = "--purge" ]; then
    rm -rf "$BASE"
fi
