# shellcheck shell=bash
# Helpers shared by scripts/testenv/servers.sh and start-hdfs.sh (sourced).
#
# Every server process is started by `spawn`, which records its PID in a
# NAME.pid file and marks the process with SLUICE_TESTENV=<directory> in its
# environment; `stop_all DIR` only signals processes whose marker owns the
# pid file, so a recycled PID is never killed by mistake.

# Where install.sh puts the Hadoop jars (override with SLUICE_HADOOP_JARS).
testenv_jars() {
  printf '%s\n' "${SLUICE_HADOOP_JARS:-${SLUICE_CACHE:-$HOME/.cache/sluice}/pyspark-2.4.8/deps/jars}"
}

# free_ports N: prints N distinct free TCP ports on 127.0.0.1, one a line
# (all bound at the same time so they differ, then released).
free_ports() {
  python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
for s in socks:
    print(s.getsockname()[1])
EOF
}

# spawn DIR NAME LOG CMD...: starts CMD in the background (stdin closed, output
# to LOG) with the ownership marker, writes its PID to DIR/NAME.pid.
spawn() {
  local dir=$1 name=$2 log=$3
  shift 3
  SLUICE_TESTENV=$dir nohup "$@" </dev/null >"$log" 2>&1 &
  echo $! >"$dir/$name.pid"
}

# alive PID: true while PID runs (a zombie counts as gone).
alive() {
  local state
  state=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n $state && $state != Z ]]
}

# owned PIDFILE PID: true if PID carries a marker for a directory that holds PIDFILE.
owned() {
  local owner
  owner=$( (tr '\0' '\n' <"/proc/$2/environ") 2>/dev/null | sed -n 's/^SLUICE_TESTENV=//p' | head -n 1) || true
  [[ -n $owner && $1 == "$owner"/* ]]
}

# wait_gone SECS PID...: waits up to SECS for the PIDs to exit; prints those
# still running.
wait_gone() {
  local until=$((SECONDS + $1)) pid
  shift
  local -a left=("$@") next
  while ((${#left[@]})) && ((SECONDS < until)); do
    sleep 0.2
    next=()
    for pid in "${left[@]}"; do
      if alive "$pid"; then next+=("$pid"); fi
    done
    left=(${next[@]+"${next[@]}"})
  done
  echo ${left[@]+"${left[@]}"}
}

# stop_pids PID...: SIGTERM, wait up to 15 s, then SIGKILL and wait up to 10 s.
stop_pids() {
  local -a left
  (($#)) || return 0
  kill -TERM "$@" 2>/dev/null || true
  read -ra left <<<"$(wait_gone 15 "$@")"
  ((${#left[@]})) || return 0
  echo "testenv: SIGKILL to ${left[*]} (still running 15 s after SIGTERM)" >&2
  kill -KILL "${left[@]}" 2>/dev/null || true
  read -ra left <<<"$(wait_gone 10 "${left[@]}")"
  ((${#left[@]})) || return 0
  echo "testenv: processes ${left[*]} did not exit even after SIGKILL" >&2
  return 1
}

# stop_all DIR: stops every process recorded in a *.pid file under DIR and
# removes the pid files. Safe to call again, and on a half-started DIR.
# Ceph needs an order: radosgw hangs on SIGTERM once the OSD is gone, and the
# memstore OSD (data in memory only) hangs on SIGTERM in Ceph 16, so all
# other processes go first, then osd.pid gets SIGKILL, then mon.pid goes.
stop_all() {
  local dir=$1 f pid wave
  local -a files=() pids
  [[ -d $dir ]] || return 0
  while IFS= read -r -d '' f; do files+=("$f"); done < <(find "$dir" -name '*.pid' -type f -print0)
  for wave in other osd.pid mon.pid; do
    pids=()
    for f in ${files[@]+"${files[@]}"}; do
      case ${f##*/} in
        osd.pid | mon.pid) [[ ${f##*/} == "$wave" ]] || continue ;;
        *) [[ $wave == other ]] || continue ;;
      esac
      pid=$(head -c 32 "$f" | tr -cd '0-9')
      if [[ -n $pid ]] && alive "$pid" && owned "$f" "$pid"; then
        if [[ $wave == osd.pid ]]; then kill -KILL "$pid" 2>/dev/null || true; fi
        pids+=("$pid")
      fi
    done
    stop_pids ${pids[@]+"${pids[@]}"}
  done
  for f in ${files[@]+"${files[@]}"}; do rm -f "$f"; done
}

# fail NAME LOG MESSAGE: prints an error naming the server with its log tail,
# then exits (the script, or the background job it runs in).
fail() {
  {
    echo "testenv: $1: $3"
    if [[ -f $2 ]]; then
      echo "---- last lines of $2"
      tail -n 30 "$2"
      echo "----"
    fi
  } >&2
  exit 1
}
