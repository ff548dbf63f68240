#!/usr/bin/env bash
# The report page in headless Chromium. Renders tests/report/sample_report.json and empty_report.json with the real
# renderer (report_render), then browser_test.mjs opens both pages in Debian's chromium through playwright-core.
# Usage: report_browser.sh REPORT_RENDER SOURCE_DIR BINARY_DIR
# Artifacts: BINARY_DIR/test-artifacts/report.png (full-page screenshot) and report/report.html.
set -euo pipefail
render=$1
src=$2
build=$3
chromium=${TRAINDX_CHROMIUM:-/usr/bin/chromium}

fail() {
  echo "report_browser: $*" >&2
  exit 1
}
[ -x "$chromium" ] || fail "no Chromium at $chromium: apt-get install chromium (scripts/install-deps.sh installs it)"
command -v node >/dev/null || fail "no node on PATH: apt-get install nodejs npm (scripts/install-deps.sh installs them)"
[ -f "$src/web/node_modules/playwright-core/package.json" ] ||
  fail "playwright-core is not installed: run \`npm ci --prefix web\` in $src (scripts/build.sh does)"

out=$build/test-artifacts
mkdir -p "$out/report" "$out/report-empty"
"$render" "$src/tests/report/sample_report.json" "$out/report" >"$out/report-console.txt"
"$render" "$src/tests/report/empty_report.json" "$out/report-empty" >/dev/null

node "$src/tests/report/browser_test.mjs" \
  --chromium "$chromium" \
  --web "$src/web" \
  --report "$src/tests/report/sample_report.json" \
  --page "$out/report/report.html" \
  --empty-page "$out/report-empty/report.html" \
  --screenshot "$out/report.png"
