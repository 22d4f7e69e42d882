#!/usr/bin/env bash
# The core benchmark, with the disk's own reference figure measured in the
# same run: dd to the data directory, then sluice bench produce (durable,
# buffer, durable at half the measured durable rate) and bench consume
# against a fresh standalone server; then the same through the Kafka
# listener with confluent-kafka (scripts/kafka_bench.py), if installed.
#
#   ./scripts/bench.sh [DATA_DIR] [MESSAGES]
set -euo pipefail
cd "$(dirname "$0")/.."
data_dir=${1:-$(mktemp -d /tmp/sluice-bench.XXXXXX)}
messages=${2:-1000000}
mkdir -p "$data_dir"
cargo build --release --bin sluice
bin=target/release/sluice

echo "== disk: dd if=/dev/zero of=$data_dir/probe bs=1M count=2048 conv=fdatasync"
dd if=/dev/zero of="$data_dir/probe" bs=1M count=2048 conv=fdatasync 2>&1 | tail -n 1
rm -f "$data_dir/probe"

port_file=$(mktemp)
"$bin" standalone --data-dir "$data_dir/sluice" --grpc-addr 127.0.0.1:0 --kafka-addr 127.0.0.1:0 >"$port_file" 2>"$data_dir/standalone.log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
  addr=$(sed -n 's/.*grpc=\([^ ]*\).*/\1/p' "$port_file")
  kafka=$(sed -n 's/.*kafka=\([^ ]*\).*/\1/p' "$port_file")
  [ -n "$addr" ] && break
  sleep 0.1
done
[ -n "$addr" ] || { echo "standalone did not start; see $data_dir/standalone.log"; exit 1; }
# Each run starts with the page cache's dirty data written out (`sync`), so
# no run pays for the one before it.
run() { sync; echo "== sluice bench $*"; "$bin" bench "$@" --server "$addr"; }

run produce --topic durable --partitions 8 --message-size 1024 --messages "$messages" --acks durable | tee "$data_dir/durable.txt"
rate=$(sed -n 's/.* \([0-9.]*\) MB\/s.*/\1/p' "$data_dir/durable.txt")
run produce --topic buffer --partitions 8 --message-size 1024 --messages "$messages" --acks buffer
half=$(awk -v r="$rate" 'BEGIN { printf "%.0f", r / 2 }')
run produce --topic halfrate --partitions 8 --message-size 1024 --messages "$((messages / 2))" --acks durable --rate-mb "$half"
run consume --topic durable

# The same load through the Kafka listener with a real Kafka client.
if python3 -c 'import confluent_kafka' 2>/dev/null; then
  for codec in none lz4; do
    sync
    echo "== scripts/kafka_bench.py (confluent-kafka, $codec)"
    python3 scripts/kafka_bench.py "$kafka" "kafka-$codec" --messages "$messages" --compression "$codec"
  done
  sync
  echo "== scripts/kafka_bench.py (confluent-kafka, none, at $half MB/s: latency under a steady load)"
  python3 scripts/kafka_bench.py "$kafka" kafka-halfrate --messages "$((messages / 2))" --rate-mb "$half" --no-consume
else
  echo "== skipped the Kafka client benchmark: pip install confluent-kafka"
fi
