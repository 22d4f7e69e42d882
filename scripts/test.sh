#!/usr/bin/env bash
# Runs every test of Sluice on a fresh machine: installs what the tests need,
# builds the sluice binary the system tests start, then runs all tests.
#
#   ./scripts/test.sh            # everything
#   ./scripts/test.sh -E 'test(durab)'   # extra arguments go to cargo-nextest
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

# protoc for code generation (ours and etcd-client's) comes from the
# protoc-bin-vendored crate through scripts/protoc.sh (.cargo/config.toml),
# so nothing is installed for it. The metadata and cluster tests start a
# real etcd; the storage tests use Ceph RGW, moto and HDFS, installed by
# scripts/testenv/install.sh and started below.
need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v etcd >/dev/null 2>&1 || need_apt+=(etcd-server)
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
if ((${#need_apt[@]})); then
  log "installing ${need_apt[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
  log "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

log "checking formatting and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

log "installing the storage test servers (Ceph RGW, moto, HDFS)"
scripts/testenv/install.sh

log "building the sluice binary for the system tests"
cargo build --bin sluice

# Real S3 (Ceph RGW, moto) and HDFS on loopback for the storage tests, for
# the length of this run; their addresses reach the tests through DIR/env.
# In CI a test whose server is missing fails instead of being skipped.
log "starting the storage test servers"
testenv=target/testenv
trap 'scripts/testenv/servers.sh down "$testenv" >/dev/null 2>&1 || true' EXIT
scripts/testenv/servers.sh up "$testenv"
# shellcheck disable=SC1091
source "$testenv/env"
export SLUICE_TEST_SERVERS_REQUIRED=1

log "running every test"
cargo nextest run --workspace --no-fail-fast "$@"
cargo test --workspace --doc
