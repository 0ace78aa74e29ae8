#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for tests and for trying the cluster path (`--submit slurm`):
#   scripts/local_slurm.sh start    # munged + slurmctld + slurmd, waits until the node is idle; prints SLURM_CONF
#   scripts/local_slurm.sh status   # sinfo / squeue, or "not running"
#   scripts/local_slurm.sh stop     # stops the daemons by their pid files
# Needs root and Debian's `slurm-wlm munge` packages (.ci/run installs them). Everything (munge key and socket,
# slurm.conf, state, spool, logs, pid files) lives in LOCAL_SLURM_DIR (default /tmp/posttrain-slurm); the system's
# munged and /etc/munge are left alone. /etc/slurm/slurm.conf is linked to ours when absent, so a plain `sbatch`
# finds it; otherwise export SLURM_CONF as `start` prints. No accounting database: finished jobs leave squeue
# after MinJobAge (posttrain.cluster keeps its own job records).
set -euo pipefail

DIR=${LOCAL_SLURM_DIR:-/tmp/posttrain-slurm}
CONF=$DIR/slurm.conf
SYSTEM_CONF=/etc/slurm/slurm.conf
HOST=$(hostname -s)
export SLURM_CONF=$CONF

need() { command -v "$1" >/dev/null 2>&1 || { echo "local_slurm: $1 not found (apt-get install slurm-wlm munge)" >&2; exit 3; }; }

running() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

node_state() { sinfo -h -n "$HOST" -o %T 2>/dev/null | head -n 1; }

write_conf() {
  local cpus=${LOCAL_SLURM_CPUS:-$(nproc)}
  local mem=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 2048 ))
  cat > "$CONF" <<EOF
ClusterName=posttrain-local
SlurmctldHost=$HOST
SlurmctldPort=${LOCAL_SLURM_PORT:-16817}
SlurmdPort=$(( ${LOCAL_SLURM_PORT:-16817} + 1 ))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire: also how long a requeued job waits before it may start again (default 120 s)
AuthInfo=socket=$DIR/munge/munge.socket,cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=$(( mem / cpus ))
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
MpiDefault=none
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ReturnToService=2
# A requeued or cancelled job gets SIGTERM, then SIGKILL after KillWait seconds.
KillWait=10
MinJobAge=300
SlurmdParameters=config_overrides
NodeName=$HOST CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

start() {
  [[ $(id -u) == 0 ]] || { echo "local_slurm: needs root (the daemons run as root here)" >&2; exit 3; }
  need munged; need slurmctld; need slurmd; need sinfo
  mkdir -p "$DIR"/{munge,state,spool,log}
  if ! running "$DIR/munged.pid"; then
    if [[ ! -f $DIR/munge/munge.key ]]; then
      dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
    fi
    chmod 700 "$DIR/munge"; chmod 400 "$DIR/munge/munge.key"
    munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
      --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"
  fi
  write_conf
  if [[ ! -e $SYSTEM_CONF && -w $(dirname "$SYSTEM_CONF") ]]; then ln -s "$CONF" "$SYSTEM_CONF"; fi
  running "$DIR/slurmctld.pid" || slurmctld -f "$CONF"
  running "$DIR/slurmd.pid" || slurmd -f "$CONF"
  for _ in $(seq 1 60); do
    state=$(node_state || true)
    case "$state" in
      idle|mixed|allocated) echo "local_slurm: node $HOST $state; export SLURM_CONF=$CONF"; return 0 ;;
      down*|drain*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 1
  done
  echo "local_slurm: node $HOST not idle after 60 s (state: ${state:-none}); logs in $DIR/log" >&2
  exit 1
}

stop() {
  for daemon in slurmd slurmctld munged; do
    pidfile=$DIR/$daemon.pid
    if running "$pidfile"; then
      pid=$(cat "$pidfile")
      kill "$pid"
      for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
      kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    fi
    rm -f "$pidfile"
  done
  if [[ -L $SYSTEM_CONF && $(readlink "$SYSTEM_CONF") == "$CONF" ]]; then rm -f "$SYSTEM_CONF"; fi
  echo "local_slurm: stopped"
}

status() {
  if running "$DIR/slurmctld.pid" && running "$DIR/slurmd.pid"; then
    echo "local_slurm: running; export SLURM_CONF=$CONF"
    sinfo
    squeue
  else
    echo "local_slurm: not running"
    return 1
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
