#!/usr/bin/env bash
# Start a one-node SLURM cluster on this machine (Debian's slurm-wlm and munge), for the real-SLURM tests.
# Runs as root. No cgroups, no accounting database: proctrack/linuxproc and task/none work in any container.
# Exits non-zero, with the daemons' logs, when the cluster does not come up: CI must fail loudly, never skip.
set -euo pipefail

CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm
mkdir -p "$CONF_DIR" "$LOG_DIR" /var/spool/slurmctld /var/spool/slurmd /run/munge
chown slurm:slurm "$LOG_DIR" /var/spool/slurmctld
chown munge:munge /run/munge

CPUS=$(nproc)
# Leave the node some memory of its own; SLURM refuses a node whose RealMemory is more than it has.
MEM_MB=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) * 3 / 4 ))

cat > "$CONF_DIR/slurm.conf" <<CONF
ClusterName=gpi-ci
SlurmctldHost=localhost
SlurmUser=slurm
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
MessageTimeout=30
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=1
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
NodeName=localhost CPUs=$CPUS RealMemory=$MEM_MB State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF

fail() {
  echo "slurm-up: $1" >&2
  for log in /var/log/munge/munged.log "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log"; do
    [ -f "$log" ] && { echo "--- $log" >&2; tail -n 40 "$log" >&2; }
  done
  exit 1
}

[ -s /etc/munge/munge.key ] || { /usr/sbin/mungekey --create --force 2>/dev/null || dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged || fail "munged did not start"
munge -n | unmunge >/dev/null || fail "munge cannot encode and decode a credential"

if pgrep -x slurmctld >/dev/null; then
  scontrol reconfigure || fail "the running slurmctld did not take the new slurm.conf"
else
  /usr/sbin/slurmctld || fail "slurmctld did not start"
fi
pgrep -x slurmd >/dev/null || /usr/sbin/slurmd || fail "slurmd did not start"

node_up() {
  for _ in $(seq 60); do
    if sinfo -h -N -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; then
      return 0
    fi
    sleep 1
  done
  return 1
}

node_up || { sinfo -N -l >&2 || true; fail "the node did not become idle within a minute"; }
# What docs/cluster.md tells an admin to do after taking a node down must work here (ReturnToService=1).
if ! squeue -h | grep -q .; then
  scontrol update nodename=localhost state=down reason=slurm-up-check
  scontrol update nodename=localhost state=resume || fail "scontrol update state=resume failed after a down"
  node_up || fail "the node did not come back after scontrol update state=resume"
fi
sinfo
