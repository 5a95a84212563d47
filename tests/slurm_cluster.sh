# Sourced by the Slurm suites: a real one-node Slurm cluster on this machine (Debian's slurm-wlm and munge, as
# root), with its slurm.conf, state and logs in a directory of its own and ports of its own; it is stopped at exit.
#   slurm_start DIR   starts munged (when none runs), slurmctld and slurmd; exports SLURM_CONF; 0 once the node is idle
#   slurm_stop        stops the daemons it started
slurm_dir=""

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

slurm_start() {
  local d=$1 node; node=$(hostname -s)
  mkdir -p "$d/state" "$d/spool"
  if ! pgrep -x munged >/dev/null; then
    [ -f /etc/munge/munge.key ] || mungekey -c >/dev/null 2>&1
    chown munge:munge /etc/munge/munge.key 2>/dev/null; chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge && chown munge:munge /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- /usr/sbin/munged || { echo "slurm_start: munged did not start"; return 1; }
  fi
  local mem; mem=$(awk '/MemTotal/ {print int($2 / 1024 / 2)}' /proc/meminfo)
  cat > "$d/slurm.conf" <<EOF
ClusterName=llamaduo-test
SlurmctldHost=$node
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$(free_port)
SlurmdPort=$(free_port)
AuthType=auth/munge
StateSaveLocation=$d/state
SlurmdSpoolDir=$d/spool
SlurmctldPidFile=$d/slurmctld.pid
SlurmdPidFile=$d/slurmd.pid
SlurmctldLogFile=$d/slurmctld.log
SlurmdLogFile=$d/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
SchedulerParameters=defer_batch
MinJobAge=600
NodeName=$node CPUs=$(nproc) RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
  export SLURM_CONF=$d/slurm.conf
  slurm_dir=$d
  slurmctld -f "$SLURM_CONF" -i && slurmd -f "$SLURM_CONF" || { echo "slurm_start: the daemons did not start"; return 1; }
  for _ in $(seq 100); do
    sinfo -h -o %t 2>/dev/null | grep -q idle && return 0
    sleep 0.2
  done
  echo "slurm_start: the node never became idle: $(sinfo 2>&1 | tail -2)"; tail -5 "$d/slurmctld.log" "$d/slurmd.log"
  return 1
}

slurm_stop() {  # by their config, which names this cluster's directory (their pid files may come late)
  [ -n "$slurm_dir" ] || return 0
  pkill -f "slurm(ctld|d) -f $slurm_dir/slurm.conf" 2>/dev/null
  for _ in $(seq 50); do pgrep -f "slurm(ctld|d) -f $slurm_dir/slurm.conf" >/dev/null || break; sleep 0.1; done
  pkill -9 -f "slurm(ctld|d) -f $slurm_dir/slurm.conf" 2>/dev/null
  slurm_dir=""
}
