#!/usr/bin/env bash
# The main job: install, build, then run the doctor on the built-in Fashion-MNIST CNN (or on the config given).
# Extra arguments go to `traindx doctor`, e.g. `bash scripts/run.sh --quick` or `bash scripts/run.sh my.toml`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
exec build/cli/traindx doctor "$@"
