#!/usr/bin/env bash
# traindx installs and is consumable: `cmake --install`, then a separate project finds it with find_package(traindx)
# and builds examples/user_loop.cpp, a user-owned LibTorch loop, which then trains and evaluates.
# usage: install_consumer.sh TRAINDX_BINARY SOURCE_DIR
set -eu
traindx=$1
src=$2
build=$(cd "$(dirname "$traindx")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build" --prefix "$tmp/prefix" >/dev/null
[ -x "$tmp/prefix/bin/traindx" ] || { echo "FAIL: the CLI was not installed"; exit 1; }
cmake -S "$src/examples/consumer" -B "$tmp/consumer" -G Ninja -DCMAKE_BUILD_TYPE=Release \
  -DCMAKE_PREFIX_PATH="$tmp/prefix" >"$tmp/configure.log" 2>&1 || { cat "$tmp/configure.log"; exit 1; }
cmake --build "$tmp/consumer" >"$tmp/build.log" 2>&1 || { tail -30 "$tmp/build.log"; exit 1; }
"$tmp/consumer/user_loop" /usr/share/datasets/fashion-mnist 100 | tee "$tmp/out.txt"
grep -q "test accuracy" "$tmp/out.txt" || { echo "FAIL: user_loop printed no accuracy"; exit 1; }
echo "install and find_package(traindx) ok"
