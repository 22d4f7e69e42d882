#!/usr/bin/env bash
# Installs what scripts/testenv/servers.sh needs to start real test servers
# (Debian 12, run as root). Idempotent and quick when everything is present.
#
#   scripts/testenv/install.sh
#
# - Ceph (mon, memstore OSD, radosgw) from Debian packages, for a real S3 (RGW).
# - moto server and boto3 from PyPI, for a second S3 and for bucket setup.
# - Java 17 and the Hadoop 2.7.3 jars shipped inside the PyPI sdist
#   pyspark==2.4.8 (about 220 MB, downloaded once into the cache directory
#   ${SLUICE_CACHE:-$HOME/.cache/sluice}), for a real HDFS.
set -euo pipefail

CACHE=${SLUICE_CACHE:-$HOME/.cache/sluice}
PYSPARK=pyspark-2.4.8

log() { printf '==> testenv: %s\n' "$*" >&2; }

# apt_install PKG...: installs Debian packages, running apt-get update only
# when the install fails (stale or empty package lists).
apt_install() {
  export DEBIAN_FRONTEND=noninteractive
  log "installing $*"
  if ! apt-get install -y -qq --no-install-recommends "$@"; then
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "$@"
  fi
}

need_apt=()
command -v radosgw >/dev/null 2>&1 || need_apt+=(ceph-mon ceph-osd radosgw ceph-common)
# The JDK (not only the JRE): start-hdfs.sh compiles its small readiness probe.
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jdk-headless)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
command -v python3 >/dev/null 2>&1 && python3 -m pip --version >/dev/null 2>&1 || need_apt+=(python3-pip)
if ((${#need_apt[@]})); then
  apt_install "${need_apt[@]}"
fi

# pip_install ARGS...: Debian's own python3 refuses pip installs (PEP 668)
# unless told otherwise; a test machine accepts that.
pip_install() {
  local -a extra=()
  if python3 -c 'import os, sys, sysconfig
sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")))'; then
    extra=(--break-system-packages)
  fi
  python3 -m pip install -q ${extra[@]+"${extra[@]}"} "$@"
}

if ! command -v moto_server >/dev/null 2>&1 || ! python3 -c 'import boto3, moto.server' >/dev/null 2>&1; then
  log "installing moto[server] and boto3"
  pip_install 'moto[server]' boto3
fi

# The Kafka-protocol tests drive Sluice with librdkafka through confluent-kafka,
# and with kafka-python (a pure-Python client).
if ! python3 -c 'import confluent_kafka' >/dev/null 2>&1; then
  log "installing confluent-kafka"
  pip_install confluent-kafka
fi
if ! python3 -c 'import kafka' >/dev/null 2>&1; then
  log "installing kafka-python"
  pip_install kafka-python
fi

jars=$CACHE/$PYSPARK/deps/jars
if [[ ! -d $jars ]]; then
  mkdir -p "$CACHE"
  sdist=$CACHE/$PYSPARK.tar.gz
  if [[ ! -f $sdist ]]; then
    log "downloading the $PYSPARK sdist (Hadoop jars, ~220 MB) into $CACHE"
    pip_install wheel setuptools
    python3 -m pip download -q --no-deps --no-build-isolation pyspark==2.4.8 -d "$CACHE"
  fi
  log "extracting the Hadoop jars into $jars"
  # Extract into a scratch directory and rename it into place, so an
  # interrupted extraction is never mistaken for a complete one.
  tmp=$(mktemp -d "$CACHE/extract.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  if ! tar xzf "$sdist" -C "$tmp" "$PYSPARK/deps/jars"; then
    rm -f "$sdist"
    echo "testenv: $sdist was damaged and is removed; run $0 again to download it" >&2
    exit 1
  fi
  rm -rf "${CACHE:?}/$PYSPARK"
  mv "$tmp/$PYSPARK" "$CACHE/$PYSPARK"
fi
