#!/usr/bin/env bash
# Starts and stops the real servers the tests use, all on 127.0.0.1 only, on
# free ports chosen at run time (install them first: scripts/testenv/install.sh).
#
#   scripts/testenv/servers.sh up DIR     # start, wait until usable, write DIR/env
#   scripts/testenv/servers.sh down DIR   # stop everything `up` started in DIR
#
# `up` starts, in parallel, each in its own subdirectory of DIR (logs there):
#   rgw/  Ceph RGW (monitor + memstore OSD + radosgw), user RGWTESTKEY/RGWTESTSECRET
#   moto/ one moto S3 server (any credentials)
#   hdfs/ HDFS NameNode + DataNode (scripts/testenv/start-hdfs.sh)
# waits until each is usable (deadline SLUICE_TESTENV_TIMEOUT seconds, default
# 120, per server), creates buckets sluice-test and sluice-test-2 on both S3s,
# and writes DIR/env, `export NAME=value` lines for the tests:
#   SLUICE_TEST_RGW_ENDPOINT SLUICE_TEST_RGW_KEY SLUICE_TEST_RGW_SECRET
#   SLUICE_TEST_MOTO_ENDPOINT SLUICE_TEST_HDFS SLUICE_TEST_JAVA_CP
#   SLUICE_TEST_HADOOP_JARS
# and prints one summary line. Every PID is recorded in a *.pid file under DIR;
# `down` stops them (SIGTERM, then SIGKILL after a deadline; Ceph in the order
# radosgw, OSD, monitor). `down` is safe to repeat and after a failed `up`;
# `up` first stops whatever an earlier `up` left in DIR. `down DIR` also stops
# a private HDFS started with `start-hdfs.sh DIR`.
#
# Typical use (scripts/test.sh); a fixed DIR lets the next `up` clean up after
# a run that was killed before its `down`:
#   dir=target/testenv
#   trap 'scripts/testenv/servers.sh down "$dir"' EXIT
#   scripts/testenv/servers.sh up "$dir"
#   source "$dir/env"
set -eEuo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR
source "$here/lib.sh"

RGW_KEY=RGWTESTKEY
RGW_SECRET=RGWTESTSECRET
BUCKETS=(sluice-test sluice-test-2)
TIMEOUT=${SLUICE_TESTENV_TIMEOUT:-120}

usage() {
  echo "usage: $0 up|down DIR" >&2
  exit 2
}

# s3_ready NAME ENDPOINT KEY SECRET DEADLINE_SECS: retries until the buckets
# can be created (or already exist) on the S3 endpoint, or the deadline passes.
s3_ready() {
  python3 - "$@" "${BUCKETS[@]}" <<'EOF'
import sys, time
import boto3
from botocore.config import Config

name, endpoint, key, secret, secs, *buckets = sys.argv[1:]
s3 = boto3.client(
    "s3", endpoint_url=endpoint, region_name="us-east-1",
    aws_access_key_id=key, aws_secret_access_key=secret,
    config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1},
                  connect_timeout=2, read_timeout=10))
deadline = time.monotonic() + float(secs)
while True:
    try:
        for b in buckets:
            try:
                s3.create_bucket(Bucket=b)
            except s3.exceptions.BucketAlreadyOwnedByYou:
                pass
        s3.head_bucket(Bucket=buckets[0])
        sys.exit(0)
    except Exception as e:  # not ready yet
        last = e
    if time.monotonic() > deadline:
        print(f"testenv: {name}: bucket create at {endpoint} still fails: {last!r}", file=sys.stderr)
        sys.exit(1)
    time.sleep(0.3)
EOF
}

# start_rgw DIR MON_PORT RGW_PORT: single-node Ceph (monitor, memstore OSD,
# radosgw) on 127.0.0.1; returns once buckets can be created.
start_rgw() {
  local C=$1 mon_port=$2 rgw_port=$3 fsid deadline
  deadline=$((SECONDS + TIMEOUT))
  trap 'echo "testenv: rgw: failed: $BASH_COMMAND" >&2' ERR
  mkdir -p "$C"/{mon/ceph-a,osd/ceph-0,run,log,rgw}
  cd "$C"
  fsid=$(python3 -c 'import uuid; print(uuid.uuid4())')
  cat >ceph.conf <<EOF
[global]
fsid = $fsid
mon host = 127.0.0.1:$mon_port
mon initial members = a
public network = 127.0.0.0/8
keyring = $C/keyring
run dir = $C/run
admin socket = $C/run/\$name.asok
log file = $C/log/\$name.log
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = 8
osd pool default pgp num = 8
mon allow pool size one = true
mon warn on pool no redundancy = false
osd crush chooseleaf type = 0
mon_max_pg_per_osd = 1000
ms bind ipv6 = false
[mon]
mon data = $C/mon/ceph-\$id
# Commit map changes every 0.1 s instead of every 1 s: radosgw creates its
# pools one after another at start, which otherwise takes about 10 s.
paxos propose interval = 0.1
paxos min wait = 0.01
[mon.a]
public addr = 127.0.0.1:$mon_port
[osd]
osd data = $C/osd/ceph-\$id
keyring = $C/osd/ceph-\$id/keyring
osd objectstore = memstore
memstore device bytes = ${SLUICE_TESTENV_RGW_BYTES:-2147483648}
public addr = 127.0.0.1
cluster addr = 127.0.0.1
[client.rgw.a]
keyring = $C/rgw.keyring
rgw data = $C/rgw
rgw frontends = beast endpoint=127.0.0.1:$rgw_port tcp_nodelay=1
EOF
  local -a conf=(-c "$C/ceph.conf")
  # Monitor commands time out rather than hang if the monitor never comes up.
  local -a ceph=(timeout 60 ceph "${conf[@]}" --connect-timeout 50)
  ceph-authtool --create-keyring keyring --gen-key -n mon. --cap mon 'allow *' >/dev/null
  ceph-authtool keyring --gen-key -n client.admin --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
  monmaptool --create --add a "127.0.0.1:$mon_port" --fsid "$fsid" monmap >/dev/null
  ceph-mon "${conf[@]}" --mkfs -i a --monmap monmap --keyring keyring
  spawn "$C" mon "$C/log/mon.out" ceph-mon "${conf[@]}" -i a -f
  "${ceph[@]}" osd create >/dev/null
  "${ceph[@]}" auth get-or-create osd.0 mon 'allow profile osd' osd 'allow *' mgr 'allow profile osd' -o osd/ceph-0/keyring
  ceph-osd "${conf[@]}" -i 0 --mkfs >log/osd-mkfs.out 2>&1 || fail rgw log/osd-mkfs.out "ceph-osd --mkfs failed"
  "${ceph[@]}" osd crush add osd.0 1.0 root=default host=localhost >/dev/null
  spawn "$C" osd "$C/log/osd.out" ceph-osd "${conf[@]}" -i 0 -f
  "${ceph[@]}" auth get-or-create client.rgw.a mon 'allow rw' osd 'allow rwx' -o rgw.keyring
  spawn "$C" radosgw "$C/log/radosgw.out" radosgw "${conf[@]}" -n client.rgw.a -f
  # radosgw creates its pools, then listens; then the user, then buckets.
  until (echo >"/dev/tcp/127.0.0.1/$rgw_port") 2>/dev/null; do
    alive "$(cat radosgw.pid)" || fail rgw "$C/log/client.rgw.a.log" "radosgw exited"
    ((SECONDS < deadline)) || fail rgw "$C/log/client.rgw.a.log" "radosgw not listening on $rgw_port after $TIMEOUT s"
    sleep 0.2
  done
  until timeout 30 radosgw-admin "${conf[@]}" user create --uid=test --display-name=test \
    --access-key="$RGW_KEY" --secret="$RGW_SECRET" >log/user-create.out 2>&1; do
    ((SECONDS < deadline)) || fail rgw log/user-create.out "radosgw-admin user create failed"
    sleep 0.5
  done
  s3_ready rgw "http://127.0.0.1:$rgw_port" "$RGW_KEY" "$RGW_SECRET" $((deadline - SECONDS)) ||
    fail rgw "$C/log/client.rgw.a.log" "not usable"
}

# start_moto DIR PORT
start_moto() {
  local M=$1 port=$2
  mkdir -p "$M"
  spawn "$M" moto "$M/moto.log" python3 -m moto.server -H 127.0.0.1 -p "$port"
  s3_ready moto "http://127.0.0.1:$port" testing testing "$TIMEOUT" || fail moto "$M/moto.log" "not usable"
}

# quote VALUE: VALUE in single quotes for a shell.
quote() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# on_signal: `up` interrupted: stop the start jobs, then everything they started.
on_signal() {
  trap - INT TERM
  echo "testenv: interrupted; stopping what was started in $D" >&2
  local job
  for job in ${start_jobs[@]+"${start_jobs[@]}"}; do
    kill -TERM -- "-$job" 2>/dev/null || true # its process group
  done
  wait 2>/dev/null || true
  stop_all "$D"
  exit 130
}

cmd_up() {
  local t0=$SECONDS failed=() i
  local names=(rgw moto hdfs)
  D=$1
  mkdir -p "$D"
  D=$(cd "$D" && pwd -P)
  stop_all "$D"
  rm -rf "$D"/{rgw,moto,hdfs} "$D/env"
  mkdir -p "$D"/{rgw,moto,hdfs}
  start_jobs=()
  trap on_signal INT TERM

  local -a ports
  mapfile -t ports < <(free_ports 9)
  local mon_port=${ports[0]} rgw_port=${ports[1]} moto_port=${ports[2]}

  # The three start in parallel, each in its own process group (set -m) so an
  # interrupted `up` can stop a job with all its children. Each job writes how
  # many seconds it took to DIR/NAME/ready-after.
  set -m
  {
    start_rgw "$D/rgw" "$mon_port" "$rgw_port"
    echo $((SECONDS - t0)) >"$D/rgw/ready-after"
  } >"$D/rgw/start.log" 2>&1 &
  start_jobs+=($!)
  {
    start_moto "$D/moto" "$moto_port"
    echo $((SECONDS - t0)) >"$D/moto/ready-after"
  } >"$D/moto/start.log" 2>&1 &
  start_jobs+=($!)
  {
    SLUICE_TESTENV_HDFS_PORTS="${ports[*]:3:6}" "$here/start-hdfs.sh" "$D/hdfs" >"$D/hdfs/start.out"
    echo $((SECONDS - t0)) >"$D/hdfs/ready-after"
  } 2>"$D/hdfs/start.log" &
  start_jobs+=($!)
  set +m

  for i in "${!names[@]}"; do
    if ! wait "${start_jobs[i]}"; then failed+=("${names[i]}"); fi
  done
  trap - INT TERM
  if ((${#failed[@]})); then
    for i in "${failed[@]}"; do
      echo "testenv: $i failed to start; last lines of $D/$i/start.log:" >&2
      tail -n 40 "$D/$i/start.log" >&2
    done
    stop_all "$D"
    echo "testenv: up failed (${failed[*]}); logs in $D" >&2
    exit 1
  fi

  local jars hdfs_url
  jars=$(testenv_jars)
  hdfs_url=$(cat "$D/hdfs/url")
  {
    echo "export SLUICE_TEST_RGW_ENDPOINT=$(quote "http://127.0.0.1:$rgw_port")"
    echo "export SLUICE_TEST_RGW_KEY=$(quote "$RGW_KEY")"
    echo "export SLUICE_TEST_RGW_SECRET=$(quote "$RGW_SECRET")"
    echo "export SLUICE_TEST_MOTO_ENDPOINT=$(quote "http://127.0.0.1:$moto_port")"
    echo "export SLUICE_TEST_HDFS=$(quote "$hdfs_url")"
    echo "export SLUICE_TEST_JAVA_CP=$(quote "$(cat "$D/hdfs/classpath")")"
    echo "export SLUICE_TEST_HADOOP_JARS=$(quote "$jars")"
  } >"$D/env.tmp"
  mv "$D/env.tmp" "$D/env"
  echo "testenv: up in $((SECONDS - t0)) s (rgw $(cat "$D/rgw/ready-after") s, moto $(cat "$D/moto/ready-after") s," \
    "hdfs $(cat "$D/hdfs/ready-after") s): rgw http://127.0.0.1:$rgw_port, moto http://127.0.0.1:$moto_port," \
    "hdfs $hdfs_url; env in $D/env"
}

cmd_down() {
  local D=$1
  [[ -d $D ]] || return 0
  D=$(cd "$D" && pwd -P)
  rm -f "$D/env"
  stop_all "$D"
  echo "testenv: down ($D)"
}

[[ $# -eq 2 ]] || usage
case $1 in
  up) cmd_up "$2" ;;
  down) cmd_down "$2" ;;
  *) usage ;;
esac
