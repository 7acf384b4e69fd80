#!/usr/bin/env bash
# A two-node Slurm cluster on this one machine, for trying and testing the HPC path.
#
#   scripts/slurm-cluster.sh start    install slurm-wlm and munge if missing, start munged,
#                                     slurmctld and two slurmd (node1, node2), wait until idle
#   scripts/slurm-cluster.sh stop     stop everything start started (idempotent)
#   scripts/slurm-cluster.sh status   sinfo and squeue, or "stopped"
#   scripts/slurm-cluster.sh env      the line to eval so sbatch, squeue... find the cluster
#
# It needs root (apt-get, munge, slurmd); CI runs as root. The configuration, state and logs go
# to $ASYNCFLOW_SLURM_DIR (default /tmp/asyncflow-slurm), never to /etc/slurm: a site's own
# configuration stays untouched, and clients find ours through $SLURM_CONF (`env` prints it).
# "Nodes" are two slurmd daemons on this host (Debian builds Slurm with multiple-slurmd
# support), each with 2 CPUs: enough for a job that spans nodes and an srun with ranks on both.
set -euo pipefail

DIR=${ASYNCFLOW_SLURM_DIR:-/tmp/asyncflow-slurm}
CONF="$DIR/slurm.conf"
NODES=(node1 node2)
PARTITION=debug
export SLURM_CONF="$CONF"

install() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged \
    >/dev/null && return
  echo "slurm-cluster: installing slurm-wlm and munge (apt-get)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
  # The packages start daemons with the site configuration; ours replace them.
  for service in slurmctld slurmd munge; do
    service "$service" stop >/dev/null 2>&1 || true
  done
}

configure() {
  mkdir -p "$DIR"/{state,log,run}
  for node in "${NODES[@]}"; do mkdir -p "$DIR/spool/$node"; done
  # RealMemory must not exceed what slurmd sees; half the machine, shared by the two nodes.
  local memory=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) / 4 ))
  cat > "$CONF" <<CONF
# Written by scripts/slurm-cluster.sh: a two-node cluster on $(hostname -s), for asyncflow tests.
ClusterName=asyncflow
SlurmctldHost=$(hostname -s)(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
SlurmctldPort=6817
StateSaveLocation=$DIR/state
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdSpoolDir=$DIR/spool/%n
SlurmdPidFile=$DIR/run/slurmd-%n.pid
SlurmdLogFile=$DIR/log/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
# A job past its walltime or scancel'ed is killed within seconds; an ended job stays known
# (squeue --states=all) for 2 min, which is how RADICAL-Pilot (psij) learns how it ended.
KillWait=5
OverTimeLimit=0
MinJobAge=120
InactiveLimit=0
NodeName=node[1-2] NodeHostname=$(hostname -s) NodeAddr=127.0.0.1 Port=17001-17002 CPUs=2 RealMemory=$memory State=UNKNOWN
PartitionName=$PARTITION Nodes=node[1-2] Default=YES MaxTime=INFINITE State=UP
CONF
}

start_munge() {
  munge -n >/dev/null 2>&1 && return  # already answering
  for d in /etc/munge /var/lib/munge /var/log/munge /run/munge; do
    mkdir -p "$d"; chown -R munge: "$d"
  done
  [ -s /etc/munge/munge.key ] || { mungekey --create 2>/dev/null || create-munge-key -f; }
  chown munge: /etc/munge/munge.key; chmod 400 /etc/munge/munge.key
  munged --force
}

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
  install
  configure
  start_munge
  running "$DIR/run/slurmctld.pid" || slurmctld -f "$CONF"
  for node in "${NODES[@]}"; do
    running "$DIR/run/slurmd-$node.pid" || slurmd -f "$CONF" -N "$node"
  done
  # Poll until both nodes are idle: this is a setup script, not the engine.
  for _ in $(seq 1 60); do
    if [ "$(sinfo -h -N -t idle -o %N 2>/dev/null | sort -u | wc -l)" -eq "${#NODES[@]}" ]; then
      echo "slurm-cluster: ${NODES[*]} idle in partition $PARTITION ($CONF)" >&2
      return
    fi
    # A node that was down when slurmctld last saw it comes back with ReturnToService=2.
    sleep 0.5
  done
  echo "slurm-cluster: nodes not idle after 30 s; see $DIR/log" >&2
  sinfo -N >&2 || true
  exit 1
}

stop_pidfile() {  # the daemon of a pid file: TERM, then KILL after 10 s
  local file=$1 pid
  [ -s "$file" ] || return 0
  pid=$(cat "$file")
  if kill -TERM "$pid" 2>/dev/null; then
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

# What can outlive the daemons: a job step's slurmstepd (told by its working directory under
# $DIR), and a task's process that left its step's tracking when the step was cancelled (a
# service stopped while it ran; proctrack/linuxproc follows parent links, and it was reparented
# to init), told by its environment: a job of this cluster (SLURM_JOB_ID, our SLURM_CONF).
stop_steps() {
  local pid environ steps=()
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    [ "$pid" = "$$" ] && continue
    if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = slurmstepd ]; then
      [[ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" == "$DIR"/* ]] && steps+=("$pid")
      continue
    fi
    environ=$( { tr '\0' '\n' < "/proc/$pid/environ"; } 2>/dev/null) || continue
    grep -qx "SLURM_CONF=$CONF" <<<"$environ" && grep -q '^SLURM_JOB_ID=' <<<"$environ" \
      && steps+=("$pid")
  done
  [ "${#steps[@]}" -eq 0 ] && return
  echo "slurm-cluster: ending ${#steps[@]} process(es) left by jobs:" >&2
  for pid in "${steps[@]}"; do  # what each was, so that a log says who left it
    echo "  $pid $(tr '\0' ' ' < "/proc/$pid/cmdline" 2>/dev/null | cut -c1-160)" >&2
  done
  kill -TERM "${steps[@]}" 2>/dev/null || true
  for _ in $(seq 1 10); do kill -0 "${steps[@]}" 2>/dev/null || return 0; sleep 0.5; done
  kill -KILL "${steps[@]}" 2>/dev/null || true
}

stop() {
  if [ -s "$CONF" ] && running "$DIR/run/slurmctld.pid"; then
    scancel --full --quiet --partition="$PARTITION" 2>/dev/null || true  # jobs end with the cluster
    for _ in $(seq 1 20); do [ -z "$(squeue -h 2>/dev/null)" ] && break; sleep 0.5; done
  fi
  for node in "${NODES[@]}"; do stop_pidfile "$DIR/run/slurmd-$node.pid"; done
  stop_pidfile "$DIR/run/slurmctld.pid"
  stop_steps


  if [ -s /run/munge/munged.pid ]; then stop_pidfile /run/munge/munged.pid; fi
  rm -rf "$DIR/state"  # the next start is a fresh cluster: no job ids or node states carried over
  echo "slurm-cluster: stopped" >&2
}

status() {
  if [ -s "$CONF" ] && running "$DIR/run/slurmctld.pid"; then
    sinfo -N; squeue
  else
    echo "stopped"
  fi
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) echo "export SLURM_CONF=$CONF" ;;
  *) echo "usage: $0 start|stop|status|env" >&2; exit 2 ;;
esac
