#!/usr/bin/env bash
# Runs a command with a single-node Slurm up: munged, slurmctld and slurmd on this machine,
# without systemd, each a child of this script (stopped and reaped at the end). Needs root and
# the Debian packages slurm-wlm and munge; without them it says so and runs the command anyway
# (tests/cluster_srun.rs then reports SKIPPED).
# Usage: bash .ci/slurm.sh cargo test --test cluster_srun
set -uo pipefail
if [ "$(id -u)" != 0 ] || ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    echo "no root, slurmctld or munged here: running without Slurm"
    exec "$@"
fi
dir="$(mktemp -d /tmp/workpool-slurm.XXXXXX)"
host="$(hostname -s)"
mkdir -p "$dir"/{state,spool,log} /run/munge /etc/munge
[ -s /etc/munge/munge.key ] || dd if=/dev/urandom of=/etc/munge/munge.key bs=1 count=1024 status=none
chmod 700 /etc/munge
chmod 400 /etc/munge/munge.key
cat >"$dir/slurm.conf" <<CONF
ClusterName=workpool
SlurmctldHost=$host
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
NodeName=$host CPUs=$(nproc) State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:8
CONF
export SLURM_CONF="$dir/slurm.conf"
munged -F --force --key-file=/etc/munge/munge.key >"$dir/log/munged.out" 2>&1 &
munge_pid=$!
sleep 0.5
slurmctld -D -f "$SLURM_CONF" >"$dir/log/slurmctld.out" 2>&1 &
ctld_pid=$!
slurmd -D -f "$SLURM_CONF" >"$dir/log/slurmd.out" 2>&1 &
d_pid=$!
for _ in $(seq 50); do
    timeout 5 sinfo -h 2>/dev/null | grep -q idle && break
    sleep 0.2
done
timeout 5 sinfo || echo "Slurm did not come up (logs in $dir/log)"
"$@"
rc=$?
# Let the job steps end (their slurmstepd reports to slurmd and slurmctld) before stopping those.
for _ in $(seq 100); do
    [ -z "$(timeout 5 squeue -h 2>/dev/null)" ] && ! pgrep -x slurmstepd >/dev/null && break
    sleep 0.2
done
kill "$d_pid" "$ctld_pid" 2>/dev/null
wait "$d_pid" "$ctld_pid" 2>/dev/null
kill "$munge_pid" 2>/dev/null
wait "$munge_pid" 2>/dev/null
rm -rf "$dir"
exit $rc
