#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) into build-fuzz/ and runs each for SECONDS (default 60)
# on a copy of its seed corpus. Exits non-zero if a build fails or a target finds a crash, leak or timeout.
#   fuzz/run.sh [SECONDS] [TARGET...]        targets: fuzz_safetensors fuzz_torch_state_dict fuzz_manifest
# Findings (crash-*, leak-*, timeout-*) land in build-fuzz/artifacts/<target>/; reproduce one with
#   build-fuzz/<target> build-fuzz/artifacts/<target>/crash-...
set -euo pipefail

seconds="${1:-60}"
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(fuzz_safetensors fuzz_torch_state_dict fuzz_manifest)

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${root}/build-fuzz"

cmake -S "${root}/fuzz" -B "${build}" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ >/dev/null
cmake --build "${build}" -j2

status=0
summary=()
for target in "${targets[@]}"; do
  name="${target#fuzz_}"
  seeds="${root}/fuzz/corpus/${name}"
  corpus="${build}/corpus/${name}"      # grows as libFuzzer finds new coverage; the seeds in git stay untouched
  artifacts="${build}/artifacts/${target}/"
  mkdir -p "${corpus}" "${artifacts}"
  dict=()
  [[ -f "${root}/fuzz/${name}.dict" ]] && dict=(-dict="${root}/fuzz/${name}.dict")
  log="${build}/${target}.log"
  echo "== ${target}: ${seconds} s"
  set +e
  "${build}/${target}" "${corpus}" "${seeds}" "${dict[@]}" -max_total_time="${seconds}" -timeout=10 \
    -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 -artifact_prefix="${artifacts}" >"${log}" 2>&1
  rc=$?
  set -e
  execs="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "${log}" | grep -o '[0-9]*$' || echo '?')"
  cov="$(grep -o 'cov: [0-9]*' "${log}" | tail -1 | grep -o '[0-9]*' || echo '?')"
  if [[ ${rc} -eq 0 ]]; then
    summary+=("${target}: clean, ${execs} executions, coverage ${cov} edges, corpus $(ls "${corpus}" | wc -l) files")
  else
    summary+=("${target}: FAILED (exit ${rc}) after ${execs} executions; see ${log} and ${artifacts}")
    tail -40 "${log}"
    status=1
  fi
done
printf '%s\n' "${summary[@]}"
exit "${status}"
