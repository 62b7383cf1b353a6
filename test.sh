#!/usr/bin/env bash
# Passes every test on a fresh Debian machine: provisions what the suites need, restores, builds, runs every test
# project and ends with one line "N passed, N failed, N skipped". Exit status is 0 only when nothing failed.
set -uo pipefail
cd "$(dirname "$0")"
ROOT="$(pwd)"
RESULTS="$ROOT/.artifacts/test-results"
CONFIGURATION="${CONFIGURATION:-Release}"

# Debian packages the test suites need, as "command:package". Only missing commands are installed.
APT_NEEDS=("node:nodejs" "npm:npm" "python3:python3" "chromium:chromium" "curl:curl" "ss:iproute2" "nginx:nginx" "redis-server:redis-server" "redis-cli:redis-tools")

log() { printf '\n==> %s\n' "$*" >&2; }

summary_and_exit() {
  echo "$1 passed, $2 failed, $3 skipped"
  [ "$2" -eq 0 ] && exit 0 || exit 1
}

provision() {
  local missing=() entry
  for entry in "${APT_NEEDS[@]+"${APT_NEEDS[@]}"}"; do
    command -v "${entry%%:*}" >/dev/null 2>&1 || missing+=("${entry#*:}")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    log "Installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -ne 0 ] && sudo="sudo"
    $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if ! command -v dotnet >/dev/null 2>&1; then
    echo "The .NET 10 SDK is required (dotnet was not found on PATH)." >&2
    summary_and_exit 0 1 0
  fi
}

provision

log "Restoring and building ($CONFIGURATION)"
if ! dotnet build AiStream.sln -c "$CONFIGURATION" -nologo -v minimal; then
  echo "The build failed." >&2
  summary_and_exit 0 1 0
fi

rm -rf "$RESULTS"
mkdir -p "$RESULTS"
log "Running tests"
dotnet test AiStream.sln -c "$CONFIGURATION" --no-build -nologo \
  --logger "trx;LogFilePrefix=results" --logger "console;verbosity=normal" \
  --results-directory "$RESULTS" -- RunConfiguration.TestSessionTimeout=1200000
status=$?

passed=0 failed=0 skipped=0
shopt -s nullglob
trx=("$RESULTS"/*.trx)
if [ "${#trx[@]}" -eq 0 ]; then
  echo "No test results were written." >&2
  summary_and_exit 0 1 0
fi
for file in "${trx[@]}"; do
  counters="$(grep -o '<Counters [^>]*' "$file" | head -1)"
  get() { printf '%s' "$counters" | grep -o " $1=\"[0-9]*\"" | grep -o '[0-9]*'; }
  p="$(get passed)"; f="$(get failed)"; e="$(get error)"; t="$(get timeout)"; a="$(get aborted)"; n="$(get notExecuted)"
  passed=$((passed + ${p:-0}))
  failed=$((failed + ${f:-0} + ${e:-0} + ${t:-0} + ${a:-0}))
  skipped=$((skipped + ${n:-0}))
done
# A crashed test host can leave counters that look clean; trust dotnet test's exit status too.
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1
fi

log "Running end-to-end tests with the official JavaScript clients (tests/e2e)"
E2E_SUMMARY="$RESULTS/e2e-summary.txt" CONFIGURATION="$CONFIGURATION" bash tests/e2e/run.sh
e2e_status=$?
e2e_get() { grep -o "$1=[0-9]*" "$RESULTS/e2e-summary.txt" 2>/dev/null | cut -d= -f2; }
ep="$(e2e_get passed)"; ef="$(e2e_get failed)"; es="$(e2e_get skipped)"
ef="${ef:-1}"
if [ "$e2e_status" -ne 0 ] && [ "$ef" -eq 0 ]; then ef=1; fi
passed=$((passed + ${ep:-0})); failed=$((failed + ef)); skipped=$((skipped + ${es:-0}))

# Name every failed .NET test (and the first line of its message) right above the summary (node's test runner
# already lists its failures at its end), so the tail of a CI log says
# which test failed without the whole log.
list_failures() {
  local file
  for file in "$RESULTS"/*.trx; do
    python3 - "$file" <<'PY' 2>/dev/null || true
import sys, xml.etree.ElementTree as ET
ns = {"t": "http://microsoft.com/schemas/VisualStudio/TeamTest/2010"}
for r in ET.parse(sys.argv[1]).getroot().iterfind(".//t:UnitTestResult", ns):
    if r.get("outcome") not in ("Passed", "NotExecuted"):
        message = r.find(".//t:Message", ns)
        first = (message.text or "").strip().splitlines()[0][:300] if message is not None and message.text else ""
        print(f"FAILED {r.get('testName')}: {first}")
PY
  done
}
[ "$failed" -gt 0 ] && list_failures

summary_and_exit "$passed" "$failed" "$skipped"
