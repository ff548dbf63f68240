#!/usr/bin/env bash
# The main job: install, build, then train the Fashion-MNIST CNN example (the doctor takes over this role).
# Extra arguments go to the traindx command, e.g. `bash scripts/run.sh --set train.epochs=1`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
exec build/cli/traindx train examples/fashion_cnn.toml "$@"
