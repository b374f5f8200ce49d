#!/usr/bin/env bash
# Start a single-node Slurm cluster on this machine (munged + slurmctld + slurmd), to try
# `hydra/launcher=slurm` without a real cluster; the tests use it too.
#
#   eval "$(scripts/slurm_cluster_start.sh)"    # exports SLURM_CONF for sbatch / squeue / sinfo
#   python -m runner -m seed=0,1 hydra/launcher=slurm
#   scripts/slurm_cluster_stop.sh
#
# Installs the Debian packages slurm-wlm and munge when missing (needs root and apt).
# Idempotent and fast when the cluster already answers. Everything it writes (config, state,
# spool, logs, the munge socket) lives under $RUNNER_SLURM_DIR (default /tmp/unlearn-runner-slurm);
# clients find the cluster through SLURM_CONF, which is printed on stdout as an export line.
# Settings: root as SlurmUser, proctrack/linuxproc and task/none (no cgroups needed, works in
# containers), select/cons_tres with CR_CPU (jobs share the node by CPU count), no accounting
# daemon (finished jobs stay visible in `scontrol show job` for MinJobAge seconds and are logged
# to jobcomp.log, which `sacct -c` reads); cred_expire=10 lets a requeued job start again after ~10 s
# (Slurm's default holds it for 120 s). A changed configuration restarts the daemons.
set -euo pipefail

BASE=${RUNNER_SLURM_DIR:-/tmp/unlearn-runner-slurm}
CONF=$BASE/slurm.conf
export SLURM_CONF=$CONF
say() { echo "slurm_cluster_start: $*" >&2; }

node_up() {
    [ -f "$CONF" ] || return 1
    local state
    state=$(timeout 10 sinfo -h -o '%t' 2>/dev/null | head -1) || return 1
    case "$state" in idle* | mix* | alloc* | comp*) return 0 ;; *) return 1 ;; esac
}

# ---- packages ---------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null; then
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        say "slurm-wlm and munge are missing and cannot be installed here (needs root and apt-get)"
        exit 2
    fi
    say "installing slurm-wlm and munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q slurm-wlm munge >&2 || { apt-get update -q >&2 && apt-get install -y -q slurm-wlm munge >&2; }
fi

mkdir -p "$BASE"/{state,spool,log,munge,munge-key}
chmod 755 "$BASE"

# ---- munge: its own key (private directory), socket and pid file under $BASE -------------------
KEY=$BASE/munge-key/munge.key
if [ ! -s "$KEY" ]; then
    if [ -s /etc/munge/munge.key ]; then cp /etc/munge/munge.key "$KEY"; else dd if=/dev/urandom of="$KEY" bs=1 count=1024 status=none; fi
fi
chown -R munge:munge "$BASE/munge" "$BASE/munge-key"
chmod 755 "$BASE/munge"     # clients must reach the socket
chmod 700 "$BASE/munge-key"
chmod 400 "$KEY"
SOCKET=$BASE/munge/munge.socket
if ! { [ -f "$BASE/munge/munged.pid" ] && kill -0 "$(cat "$BASE/munge/munged.pid")" 2>/dev/null; }; then
    say "starting munged"
    rm -f "$SOCKET" "$SOCKET.lock"
    runuser -u munge -- /usr/sbin/munged --key-file="$KEY" --socket="$SOCKET" \
        --pid-file="$BASE/munge/munged.pid" --log-file="$BASE/munge/munged.log" --seed-file="$BASE/munge/munged.seed"
fi

# ---- slurm.conf -------------------------------------------------------------------------------------
NODE=$(hostname -s)
CPUS=$(nproc --all)  # the machine's CPUs: plain nproc follows OMP_NUM_THREADS
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
cat >"$CONF.new" <<EOF
# single-node cluster written by scripts/slurm_cluster_start.sh
ClusterName=runner
SlurmctldHost=$NODE(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET,cred_expire=10
StateSaveLocation=$BASE/state
SlurmdSpoolDir=$BASE/spool
SlurmctldPidFile=$BASE/slurmctld.pid
SlurmdPidFile=$BASE/slurmd.pid
SlurmctldLogFile=$BASE/log/slurmctld.log
SlurmdLogFile=$BASE/log/slurmd.log
SlurmctldPort=6817
SlurmdPort=6818
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
JobRequeue=1
MinJobAge=3600
KillWait=10
SlurmctldTimeout=30
SlurmdTimeout=60
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$BASE/log/jobcomp.log
NodeName=$NODE NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=$NODE Default=YES MaxTime=INFINITE State=UP
EOF

# ---- daemons ---------------------------------------------------------------------------------------
running() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
if [ -f "$CONF" ] && cmp -s "$CONF" "$CONF.new"; then
    rm -f "$CONF.new"
    if node_up; then  # already running with this configuration
        echo "export SLURM_CONF=$CONF"
        exit 0
    fi
else  # first start, or a changed configuration: (re)start the daemons with it
    for pidfile in "$BASE/slurmd.pid" "$BASE/slurmctld.pid"; do
        if running "$pidfile"; then kill "$(cat "$pidfile")"; sleep 1; fi
    done
    mv "$CONF.new" "$CONF"
fi
if ! running "$BASE/slurmctld.pid"; then
    say "starting slurmctld"
    /usr/sbin/slurmctld -f "$CONF"
fi
if ! running "$BASE/slurmd.pid"; then
    say "starting slurmd"
    /usr/sbin/slurmd -f "$CONF"
fi

for _ in $(seq 1 60); do
    if node_up; then
        echo "export SLURM_CONF=$CONF"
        exit 0
    fi
    state=$(timeout 10 sinfo -h -o '%t' 2>/dev/null | head -1 || true)
    case "$state" in down* | drain*) scontrol update nodename="$NODE" state=resume >/dev/null 2>&1 || true ;; esac
    sleep 0.5
done
say "the node did not come up; see $BASE/log/slurmctld.log and $BASE/log/slurmd.log"
exit 1
