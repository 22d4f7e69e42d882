#!/bin/sh
# The protoc every build script of the workspace uses (set as PROTOC in
# .cargo/config.toml): the one the protoc-bin-vendored crate ships for this
# platform (cargo has unpacked it before any build script runs), with its
# well-known .proto files, so a fresh machine builds without installing
# protobuf-compiler. Falls back to a protoc on PATH.
for dir in $(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/protoc-bin-vendored-*-*/ 2>/dev/null | sort -r); do
  if [ -x "$dir/bin/protoc" ] && "$dir/bin/protoc" --version >/dev/null 2>&1; then
    exec "$dir/bin/protoc" -I"$dir/include" "$@"
  fi
done
exec protoc "$@"
