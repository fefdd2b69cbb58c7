#!/usr/bin/env bash
# A real Slurm cluster on this machine for tests and CI (docs/testing.md, "The local Slurm cluster"):
# munge + slurmctld + two slurmd "nodes" (n1, n2) on loopback, from Debian's packages.
#   scripts/local_slurm.sh start    install if needed, configure, start; idempotent
#   scripts/local_slurm.sh stop     stop what start started
#   scripts/local_slurm.sh status
# Needs root (it writes /etc/slurm and starts daemons). Not for use on a real cluster.
set -euo pipefail
cmd=${1:-start}
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
CONF=/etc/slurm/slurm.conf

install() {
  if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null \
     || ! command -v sbatch >/dev/null; then
    echo "[slurm] installing munge, slurmctld, slurmd, slurm-client"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq munge slurmctld slurmd slurm-client >/dev/null
  fi
}

configure() {
  local host
  host=$(hostname)
  $SUDO mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd/n1 /var/spool/slurmd/n2 /var/log/slurm
  $SUDO tee "$CONF" >/dev/null <<CONF
ClusterName=local
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd/%n
SlurmdPidFile=/var/run/slurmd-%n.pid
SlurmctldPidFile=/var/run/slurmctld.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd-%n.log
ReturnToService=2
NodeName=n1 NodeHostname=$host NodeAddr=127.0.0.1 Port=17001 CPUs=1 RealMemory=4000
NodeName=n2 NodeHostname=$host NodeAddr=127.0.0.1 Port=17002 CPUs=1 RealMemory=4000
PartitionName=debug Nodes=n1,n2 Default=YES MaxTime=INFINITE State=UP
CONF
  grep -q "^127.0.0.1 n1 n2$" /etc/hosts || echo "127.0.0.1 n1 n2" | $SUDO tee -a /etc/hosts >/dev/null
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return; fi
  $SUDO mkdir -p /run/munge /var/lib/munge /var/log/munge
  $SUDO chown munge:munge /run/munge /var/lib/munge /var/log/munge
  [ -f /etc/munge/munge.key ] || $SUDO mungekey --create 2>/dev/null || $SUDO /usr/sbin/create-munge-key -f
  $SUDO su -s /bin/sh munge -c munged
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return; sleep 0.1; done
  echo "[slurm] munged did not start" >&2; exit 1
}

launch() {
  pgrep -x slurmctld >/dev/null || $SUDO slurmctld
  pgrep -f "slurmd -N n1" >/dev/null || $SUDO slurmd -N n1
  pgrep -f "slurmd -N n2" >/dev/null || $SUDO slurmd -N n2
  for _ in $(seq 60); do
    if sinfo -h -o "%T %D" 2>/dev/null | grep -q "^idle 2$"; then
      echo "[slurm] ready: $(sinfo -h | tr -s ' ')"; return 0
    fi
    sleep 0.5
  done
  return 1
}

start() {
  install
  configure
  start_munge
  # daemons left by an earlier run (or still shutting down) may not answer: restart them once
  if ! launch; then
    echo "[slurm] no answer from the running daemons: restarting them" >&2
    stop_daemons
    if ! launch; then
      echo "[slurm] nodes did not become idle:" >&2
      sinfo >&2 || true
      exit 1
    fi
  fi
}

stop_daemons() {
  scontrol shutdown >/dev/null 2>&1 || true
  for _ in $(seq 20); do
    pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null || return 0
    sleep 0.5
  done
  pkill -9 -x slurmctld 2>/dev/null || true
  pkill -9 -x slurmd 2>/dev/null || true
  sleep 0.5
}

stop() {
  stop_daemons
  pkill -x munged 2>/dev/null || true
  echo "[slurm] stopped"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) sinfo ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
