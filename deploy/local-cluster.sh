#!/usr/bin/env bash
# A local Sluice cluster on loopback, for trying cluster mode on one machine:
# etcd, one controller, N brokers and M proxies, all on shared volumes:
# a local directory in DIR by default, or the given --volume URLs (S3, HDFS;
# credentials from the environment or from --config FILE's volume_options,
# see docs/storage.md).
#
#   deploy/local-cluster.sh up [--brokers N] [--proxies M] [--dir DIR] [--volume URL]... [--config FILE]
#   deploy/local-cluster.sh status [--dir DIR]
#   deploy/local-cluster.sh down [--dir DIR]
#
# Clients use any proxy: sluice topic list --server 127.0.0.1:7070, or Kafka
# clients: kcat -b 127.0.0.1:9092 -L
# Ports: proxies 7070, 7080, ... (Kafka 9092, 9102, ...); controller 7091;
# brokers 7101, 7102, ...;
# etcd 2379 (peer 2380). Set SLUICE_BASE_PORT to shift them all (for a
# second cluster). etcd comes from Debian's etcd-server package.
set -euo pipefail

cmd=${1:-}
shift || true
brokers=3
proxies=2
dir=./sluice-cluster
volumes=()
config=
while [ $# -gt 0 ]; do
  case "$1" in
    --volume) volumes+=("$2"); shift 2 ;;
    --config) config=$2; shift 2 ;;
    --brokers) brokers=$2; shift 2 ;;
    --proxies) proxies=$2; shift 2 ;;
    --dir) dir=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
base=${SLUICE_BASE_PORT:-0}
etcd_port=$((2379 + base))
etcd_peer=$((2380 + base))
controller_port=$((7091 + base))
root=$(cd "$(dirname "$0")/.." && pwd)

die() { echo "error: $*" >&2; exit 1; }

# SLUICE_BIN overrides; otherwise build (a no-op when up to date).
sluice_bin() {
  if [ -n "${SLUICE_BIN:-}" ]; then
    echo "$SLUICE_BIN"
  else
    (cd "$root" && cargo build --release --bin sluice >&2)
    echo "$root/target/release/sluice"
  fi
}

# Starts NAME in the background with its log and pid file in $dir.
start() {
  local name=$1; shift
  nohup "$@" >"$dir/$name.log" 2>&1 &
  echo $! >"$dir/$name.pid"
}

# Waits until a line matching PATTERN appears in NAME's log.
wait_log() {
  local name=$1 pattern=$2
  for _ in $(seq 1 150); do
    grep -q "$pattern" "$dir/$name.log" 2>/dev/null && return 0
    kill -0 "$(cat "$dir/$name.pid")" 2>/dev/null || die "$name exited; see $dir/$name.log"
    sleep 0.1
  done
  die "$name did not start; see $dir/$name.log"
}

up() {
  command -v etcd >/dev/null || die "etcd is not installed (Debian: apt-get install etcd-server)"
  [ -e "$dir/etcd.pid" ] && kill -0 "$(cat "$dir/etcd.pid")" 2>/dev/null && die "a cluster already runs in $dir; run: $0 down --dir $dir"
  mkdir -p "$dir/volume" "$dir/etcd-data"
  local bin endpoints storage=()
  bin=$(sluice_bin)
  if ((${#volumes[@]})); then
    for volume in "${volumes[@]}"; do storage+=(--volume "$volume"); done
  else
    storage+=(--volume "$(cd "$dir/volume" && pwd)")
  fi
  if [ -n "$config" ]; then storage+=(--config "$(cd "$(dirname "$config")" && pwd)/$(basename "$config")"); fi
  endpoints="http://127.0.0.1:$etcd_port"
  start etcd etcd --name n0 --data-dir "$dir/etcd-data" --logger=zap \
    --listen-client-urls "$endpoints" --advertise-client-urls "$endpoints" \
    --listen-peer-urls "http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls "http://127.0.0.1:$etcd_peer" \
    --initial-cluster "n0=http://127.0.0.1:$etcd_peer"
  wait_log etcd "serving client"
  start controller "$bin" controller --etcd "$endpoints" --grpc-addr "127.0.0.1:$controller_port"
  wait_log controller "sluice controller"
  for i in $(seq 1 "$brokers"); do
    start "broker-$i" "$bin" broker --id "$i" --etcd "$endpoints" --grpc-addr "127.0.0.1:$((7100 + i + base))" "${storage[@]}"
  done
  for i in $(seq 1 "$brokers"); do wait_log "broker-$i" "sluice broker"; done
  for i in $(seq 0 $((proxies - 1))); do
    start "proxy-$i" "$bin" proxy --etcd "$endpoints" --grpc-addr "127.0.0.1:$((7070 + 10 * i + base))" \
      --kafka-addr "127.0.0.1:$((9092 + 10 * i + base))" "${storage[@]}"
  done
  for i in $(seq 0 $((proxies - 1))); do wait_log "proxy-$i" "sluice proxy"; done
  status
  echo "try: $bin topic create demo --partitions 6 --server 127.0.0.1:$((7070 + base))"
}

status() {
  local any=0
  for pid_file in "$dir"/*.pid; do
    [ -e "$pid_file" ] || continue
    any=1
    local name pid state
    name=$(basename "$pid_file" .pid)
    pid=$(cat "$pid_file")
    if kill -0 "$pid" 2>/dev/null; then state=running; else state=stopped; fi
    local addr
    addr=$(grep -o -m1 'grpc=[^ ]*\( kafka=[^ ]*\)\?' "$dir/$name.log" 2>/dev/null | sed 's/grpc=//' || true)
    printf '%-12s %-8s pid %-8s %s\n' "$name" "$state" "$pid" "${addr:-}"
  done
  [ "$any" = 1 ] || echo "no cluster in $dir"
}

down() {
  # Proxies and brokers first (brokers flush), then the controller, then etcd.
  for group in "proxy-*" "broker-*" controller etcd; do
    for pid_file in "$dir"/$group.pid; do
      [ -e "$pid_file" ] || continue
      kill "$(cat "$pid_file")" 2>/dev/null || true
    done
    for pid_file in "$dir"/$group.pid; do
      [ -e "$pid_file" ] || continue
      local pid
      pid=$(cat "$pid_file")
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      rm -f "$pid_file"
    done
  done
  echo "stopped; data and logs stay in $dir (remove it to start afresh)"
}

case "$cmd" in
  up) up ;;
  status) status ;;
  down) down ;;
  *) echo "usage: $0 up|status|down [--brokers N] [--proxies M] [--dir DIR] [--volume URL]... [--config FILE]" >&2; exit 2 ;;
esac
