#!/usr/bin/env bash
# Starts a private real HDFS 2.7.3 (NameNode + DataNode, on Java 17, jars from
# scripts/testenv/install.sh) on free ports of 127.0.0.1, everything in DIR.
#
#   scripts/testenv/start-hdfs.sh DIR
#
# Prints hdfs://127.0.0.1:PORT once a file can be written and read back
# (deadline: SLUICE_TESTENV_TIMEOUT seconds, default 120). Writes DIR/nn.pid,
# DIR/dn.pid, DIR/classpath (class path that runs HDFS tools such as
# org.apache.hadoop.fs.FsShell) and DIR/url; logs go to DIR/*.log.
# Stop it with `scripts/testenv/servers.sh down DIR` (or kill the two PIDs).
# Any earlier HDFS recorded in DIR is stopped and its data removed first.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR
source "$here/lib.sh"

if [[ $# -ne 1 ]]; then
  echo "usage: $0 DIR" >&2
  exit 2
fi
mkdir -p "$1"
W=$(cd "$1" && pwd -P)
J=$(testenv_jars)
if [[ ! -f $J/hadoop-hdfs-2.7.3.jar ]]; then
  echo "testenv: hdfs: no Hadoop jars in $J; run scripts/testenv/install.sh" >&2
  exit 1
fi

stop_all "$W"
C=$W/conf
D=$W/data
rm -rf "$C" "$D" "$W"/{nn,dn,format,probe,probe-compile}.log "$W/url"
# Empty webapps/* on the class path let the NameNode/DataNode HTTP servers start.
mkdir -p "$C"/webapps/{hdfs,datanode,secondary,static} "$D"

# On any failure (or signal), stop what was started.
trap 'stop_all "$W"' EXIT

# SLUICE_TESTENV_HDFS_PORTS: six ports chosen by the caller (servers.sh picks
# all its ports at once so they cannot collide); otherwise chosen here.
read -r NN NN_HTTP SNN_HTTP DN DN_HTTP DN_IPC <<<"${SLUICE_TESTENV_HDFS_PORTS:-$(free_ports 6 | tr '\n' ' ')}"
if [[ -z ${DN_IPC:-} ]]; then
  echo "testenv: hdfs: SLUICE_TESTENV_HDFS_PORTS needs six ports" >&2
  exit 2
fi

cat >"$C/core-site.xml" <<EOF
<configuration>
  <property><name>fs.defaultFS</name><value>hdfs://127.0.0.1:$NN</value></property>
  <property><name>hadoop.tmp.dir</name><value>$D/tmp</value></property>
  <!-- The DataNode starts with the NameNode: retry connecting every 0.2 s
       (instead of 1 s), still for 10 s. -->
  <property><name>ipc.client.connect.retry.interval</name><value>200</value></property>
  <property><name>ipc.client.connect.max.retries</name><value>50</value></property>
</configuration>
EOF
cat >"$C/hdfs-site.xml" <<EOF
<configuration>
  <property><name>dfs.replication</name><value>1</value></property>
  <property><name>dfs.namenode.name.dir</name><value>file://$D/nn</value></property>
  <property><name>dfs.datanode.data.dir</name><value>file://$D/dn</value></property>
  <property><name>dfs.namenode.rpc-address</name><value>127.0.0.1:$NN</value></property>
  <property><name>dfs.namenode.http-address</name><value>127.0.0.1:$NN_HTTP</value></property>
  <property><name>dfs.namenode.secondary.http-address</name><value>127.0.0.1:$SNN_HTTP</value></property>
  <property><name>dfs.datanode.address</name><value>127.0.0.1:$DN</value></property>
  <property><name>dfs.datanode.http.address</name><value>127.0.0.1:$DN_HTTP</value></property>
  <property><name>dfs.datanode.ipc.address</name><value>127.0.0.1:$DN_IPC</value></property>
  <property><name>dfs.webhdfs.enabled</name><value>false</value></property>
  <property><name>dfs.permissions.enabled</name><value>false</value></property>
  <property><name>dfs.namenode.datanode.registration.ip-hostname-check</name><value>false</value></property>
</configuration>
EOF
# Servers log at INFO to their stdout (DIR/*.log); tools pass
# -Dhadoop.root.logger=WARN,console to be quieter.
cat >"$C/log4j.properties" <<'EOF'
hadoop.root.logger=INFO,console
log4j.rootLogger=${hadoop.root.logger}
log4j.appender.console=org.apache.log4j.ConsoleAppender
log4j.appender.console.target=System.err
log4j.appender.console.layout=org.apache.log4j.PatternLayout
log4j.appender.console.layout.ConversionPattern=%d{ISO8601} %p %c{2}: %m%n
EOF

CP="$C:$J/*"
printf '%s\n' "$CP" >"$W/classpath"

# The readiness probe (HdfsProbe.java: write, read back, delete in one JVM) is
# compiled once into the cache, in the background while the servers start.
# Without javac the probe falls back to FsShell (three JVM runs, ~3 s slower).
cache=${SLUICE_CACHE:-$HOME/.cache/sluice}
mkdir -p "$cache"
probe_classes=
if command -v javac >/dev/null 2>&1; then
  probe_classes=$cache/hdfs-probe-$(sha256sum "$here/HdfsProbe.java" | cut -c1-16)
  if [[ ! -f $probe_classes/HdfsProbe.class ]]; then
    (
      tmp=$(mktemp -d "$cache/hdfs-probe.XXXXXX")
      if javac -nowarn --release 11 -d "$tmp" -cp "$CP" "$here/HdfsProbe.java"; then
        mv -T "$tmp" "$probe_classes" 2>/dev/null || rm -rf "$tmp" # lost a race: fine
      else
        rm -rf "$tmp"
        exit 1
      fi
    ) >"$W/probe-compile.log" 2>&1 &
    compile_job=$!
  fi
fi

server_java=(java -Xmx512m -XX:+UseSerialGC -cp "$CP")
# A freshly formatted name directory does not depend on ports or paths, so
# `NameNode -format` (a 2-3 s JVM run) happens once, into the cache.
namedir=$cache/hdfs-2.7.3-formatted-namedir
if [[ ! -f $namedir/current/VERSION ]]; then
  if ! SLUICE_TESTENV=$W "${server_java[@]}" org.apache.hadoop.hdfs.server.namenode.NameNode \
    -format -force -nonInteractive </dev/null >"$W/format.log" 2>&1; then
    fail hdfs "$W/format.log" "NameNode -format failed"
  fi
  tmp=$(mktemp -d "$cache/hdfs-namedir.XXXXXX")
  cp -a "$D/nn/." "$tmp/"
  mv -T "$tmp" "$namedir" 2>/dev/null || rm -rf "$tmp" # lost a race: fine
else
  cp -a "$namedir" "$D/nn"
fi
spawn "$W" nn "$W/nn.log" "${server_java[@]}" org.apache.hadoop.hdfs.server.namenode.NameNode
spawn "$W" dn "$W/dn.log" "${server_java[@]}" org.apache.hadoop.hdfs.server.datanode.DataNode

if [[ -n ${compile_job:-} ]] && ! wait "$compile_job"; then
  echo "testenv: hdfs: compiling HdfsProbe.java failed (see $W/probe-compile.log); using FsShell" >&2
  probe_classes=
fi

# Ready when a file can be written and read back. Before each (slow: JVM
# start) attempt, cheap checks: the NameNode port is open and, when its JMX
# answers, it reports a live DataNode.
url=hdfs://127.0.0.1:$NN
client_java=(java -XX:TieredStopAtLevel=1 -XX:+UseSerialGC '-Dhadoop.root.logger=WARN,console')
fs=("${client_java[@]}" -cp "$CP" org.apache.hadoop.fs.FsShell -fs "$url")
probe=/.sluice-testenv-probe
printf 'sluice testenv probe\n' >"$W/probe.txt"
live_datanodes() {
  python3 - "$NN_HTTP" <<'EOF'
import json, sys, urllib.request
url = "http://127.0.0.1:%s/jmx?qry=Hadoop:service=NameNode,name=FSNamesystemState" % sys.argv[1]
try:
    beans = json.load(urllib.request.urlopen(url, timeout=2))["beans"]
except Exception:
    sys.exit(0)  # JMX not answering: let the write decide
sys.exit(0 if beans and beans[0].get("NumLiveDataNodes", 0) > 0 else 1)
EOF
}
write_read() {
  if [[ -n $probe_classes ]]; then
    "${client_java[@]}" -cp "$probe_classes:$CP" HdfsProbe "$url" 10
  else
    "${fs[@]}" -put -f "$W/probe.txt" "$probe" &&
      "${fs[@]}" -cat "$probe" | cmp -s - "$W/probe.txt" &&
      "${fs[@]}" -rm -skipTrash "$probe"
  fi
}
deadline=$((SECONDS + ${SLUICE_TESTENV_TIMEOUT:-120}))
while :; do
  alive "$(cat "$W/nn.pid")" || fail hdfs "$W/nn.log" "NameNode exited"
  alive "$(cat "$W/dn.pid")" || fail hdfs "$W/dn.log" "DataNode exited"
  if (echo >"/dev/tcp/127.0.0.1/$NN") 2>/dev/null && live_datanodes && write_read >>"$W/probe.log" 2>&1; then
    break
  fi
  if ((SECONDS >= deadline)); then
    fail hdfs "$W/dn.log" "no write/read within ${SLUICE_TESTENV_TIMEOUT:-120} s (see also $W/nn.log, $W/probe.log)"
  fi
  sleep 0.5
done

trap - EXIT
printf '%s\n' "$url" | tee "$W/url"
