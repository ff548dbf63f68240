#!/usr/bin/env bash
# Installs what is missing, then configures and builds traindx in Release into build/.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh

# The report's web assets (chart libraries; playwright-core for the browser test) from npm, installed only when
# web/node_modules is missing or web/package-lock.json changed since the last install (a hash, not a timestamp:
# checkouts touch timestamps).
lock_hash=$(sha256sum web/package-lock.json | cut -d' ' -f1)
lock_stamp=web/node_modules/.traindx-lock-sha256
if [ ! -f "$lock_stamp" ] || [ "$(cat "$lock_stamp")" != "$lock_hash" ]; then
  npm ci --prefix web --no-audit --no-fund
  echo "$lock_hash" >"$lock_stamp"
fi

jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$jobs"
