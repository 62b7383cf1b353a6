#!/usr/bin/env bash
# End-to-end tests of the gateway with official third-party JavaScript clients (eventsource, @microsoft/signalr, ai,
# @ai-sdk/react, @ag-ui/client), on Node's built-in test runner.
#
# Builds the TypeScript client (src/clients), not the gateway: expects src/AiStream.Gateway/bin/$CONFIGURATION/net10.0/AiStream.Gateway.dll (from
# `dotnet build AiStream.sln -c $CONFIGURATION`). Installs the locked npm packages when node_modules is missing or
# stale, starts the gateway on a free loopback port with a fast simulated model, runs tests/e2e/*.test.mjs against it
# (GATEWAY_URL), stops it, and writes one line "passed=N failed=N skipped=N" to $E2E_SUMMARY
# (default tests/e2e/.results/summary.txt). Exit status is 0 only when every test passed or was skipped.
#
# Environment: CONFIGURATION (default Release), E2E_SUMMARY, E2E_RUN_KNOWN_BUGS=1 (also run the tests skipped for a
# known gateway bug), E2E_GATEWAY_URL (test an already running gateway instead of starting one).
set -uo pipefail

CALLER_PWD="$(pwd)"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
CONFIGURATION="${CONFIGURATION:-Release}"
DLL="$ROOT/src/AiStream.Gateway/bin/$CONFIGURATION/net10.0/AiStream.Gateway.dll"
RESULTS="$HERE/.results"
SUMMARY="${E2E_SUMMARY:-$RESULTS/summary.txt}"
case "$SUMMARY" in /*) ;; *) SUMMARY="$CALLER_PWD/$SUMMARY" ;; esac
TAP="$RESULTS/results.tap"
GATEWAY_LOG="$RESULTS/gateway.log"
READY_TIMEOUT_SECONDS=30
# A hung test file cannot hold the run past this (each test also has its own 15 s timeout).
TESTS_TIMEOUT_SECONDS=540

GATEWAY_PID=""

log() { printf '\n==> e2e: %s\n' "$*" >&2; }

write_summary() {
  mkdir -p "$(dirname "$SUMMARY")"
  printf 'passed=%s failed=%s skipped=%s\n' "$1" "$2" "$3" >"$SUMMARY"
  echo "e2e: passed=$1 failed=$2 skipped=$3"
}

# Anything that stops the suite from running counts as one failure.
abort() {
  echo "e2e: $*" >&2
  write_summary 0 1 0
  exit 1
}

stop_gateway() {
  if [ -n "$GATEWAY_PID" ] && kill -0 "$GATEWAY_PID" 2>/dev/null; then
    kill "$GATEWAY_PID" 2>/dev/null
    for _ in $(seq 1 50); do
      kill -0 "$GATEWAY_PID" 2>/dev/null || break
      sleep 0.2
    done
    kill -9 "$GATEWAY_PID" 2>/dev/null
    wait "$GATEWAY_PID" 2>/dev/null
  fi
  GATEWAY_PID=""
}
trap stop_gateway EXIT
trap 'exit 130' INT TERM

mkdir -p "$RESULTS"
rm -f "$TAP" "$SUMMARY"

command -v node >/dev/null 2>&1 || abort "Node.js 20 or later is required (node was not found on PATH)."
command -v npm >/dev/null 2>&1 || abort "npm is required (npm was not found on PATH)."
NODE_MAJOR="$(node -p 'process.versions.node.split(".")[0]')"
[ "$NODE_MAJOR" -ge 20 ] 2>/dev/null || abort "Node.js 20 or later is required (found $(node --version))."

# node_modules is reinstalled from package-lock.json whenever the lock file changed since the last install.
cd "$HERE" || abort "cannot enter $HERE"
LOCK_HASH="$(sha256sum package-lock.json | cut -d' ' -f1)"
STAMP="node_modules/.e2e-package-lock.sha256"
if [ ! -d node_modules ] || [ "$(cat "$STAMP" 2>/dev/null)" != "$LOCK_HASH" ]; then
  log "Installing npm packages (npm ci)"
  npm ci --no-audit --no-fund --loglevel=error >&2 || abort "npm ci failed."
  echo "$LOCK_HASH" >"$STAMP"
fi

# The TypeScript client and the web app (src/clients): installed from their lock file when it changed, then built
# (the client's dist/ is what client.test.mjs imports; the web build is checked against the committed bundle).
CLIENTS="$ROOT/src/clients"
CLIENTS_HASH="$(sha256sum "$CLIENTS/package-lock.json" | cut -d' ' -f1)"
CLIENTS_STAMP="$CLIENTS/node_modules/.clients-package-lock.sha256"
if [ ! -d "$CLIENTS/node_modules" ] || [ "$(cat "$CLIENTS_STAMP" 2>/dev/null)" != "$CLIENTS_HASH" ]; then
  log "Installing the clients' npm packages (npm ci)"
  (cd "$CLIENTS" && npm ci --no-audit --no-fund --loglevel=error >&2) || abort "npm ci failed in src/clients."
  echo "$CLIENTS_HASH" >"$CLIENTS_STAMP"
fi
log "Building the TypeScript client"
(cd "$CLIENTS" && npm run build --silent -w typescript >&2) || abort "the TypeScript client did not build."

free_port() {
  node -e '
    const s = require("net").createServer();
    s.listen(0, "127.0.0.1", () => { const { port } = s.address(); s.close(() => console.log(port)); });'
}

is_ready() {
  node -e '
    fetch(process.argv[1], { signal: AbortSignal.timeout(2000) })
      .then((r) => process.exit(r.status === 200 ? 0 : 1), () => process.exit(1));' "$1/readyz"
}

# Starts the gateway on a free port and waits for /readyz; retries with another port if it dies before ready
# (another process may take the port between picking and binding it).
start_gateway() {
  local attempt port deadline
  for attempt in 1 2 3; do
    port="$(free_port)" || return 1
    GATEWAY_URL="http://127.0.0.1:$port"
    log "Starting the gateway on $GATEWAY_URL (attempt $attempt)"
    # Run from the output folder so its appsettings.json is the content root's; fast simulated model so a run takes
    # well under a second; a coalescing threshold no watcher reaches here, so every watcher's frames are identical;
    # a 1 s presence leave grace, so presence tests see a leave soon after a client stops.
    (
      cd "$(dirname "$DLL")" &&
        exec env \
          ASPNETCORE_URLS= \
          AiStream__Providers__sim__TokensPerSecond=200 \
          AiStream__Providers__sim__TimeToFirstTokenMs=20 \
          AiStream__Sessions__CoalesceThreshold=2048 \
          AiStream__Presence__LeaveGraceSeconds=1 \
          Logging__LogLevel__Default=Warning \
          Logging__LogLevel__Microsoft.Hosting.Lifetime=Information \
          dotnet "$DLL" --urls "$GATEWAY_URL"
    ) >"$GATEWAY_LOG.$attempt" 2>&1 &
    GATEWAY_PID=$!
    deadline=$((SECONDS + READY_TIMEOUT_SECONDS))
    while [ "$SECONDS" -lt "$deadline" ]; do
      if ! kill -0 "$GATEWAY_PID" 2>/dev/null; then
        wait "$GATEWAY_PID" 2>/dev/null
        echo "e2e: the gateway exited before it was ready; its log:" >&2
        tail -n 30 "$GATEWAY_LOG.$attempt" >&2
        GATEWAY_PID=""
        break
      fi
      if is_ready "$GATEWAY_URL"; then
        ln -sf "$(basename "$GATEWAY_LOG.$attempt")" "$GATEWAY_LOG"
        return 0
      fi
      sleep 0.25
    done
    if [ -n "$GATEWAY_PID" ]; then
      echo "e2e: the gateway was not ready within $READY_TIMEOUT_SECONDS s; its log:" >&2
      tail -n 30 "$GATEWAY_LOG.$attempt" >&2
      stop_gateway
      return 1
    fi
  done
  return 1
}

rm -f "$GATEWAY_LOG" "$GATEWAY_LOG".*
if [ -n "${E2E_GATEWAY_URL:-}" ]; then
  GATEWAY_URL="${E2E_GATEWAY_URL%/}"
  is_ready "$GATEWAY_URL" || abort "E2E_GATEWAY_URL $GATEWAY_URL is not ready (GET /readyz)."
else
  [ -f "$DLL" ] || abort "$DLL not found: build first (dotnet build AiStream.sln -c $CONFIGURATION)."
  command -v dotnet >/dev/null 2>&1 || abort "dotnet was not found on PATH."
  start_gateway || abort "the gateway did not start."
fi

log "Running the end-to-end tests against $GATEWAY_URL"
shopt -s nullglob
TEST_FILES=("$HERE"/*.test.mjs)
[ "${#TEST_FILES[@]}" -gt 0 ] || abort "no test files (*.test.mjs) in $HERE."
GATEWAY_URL="$GATEWAY_URL" GATEWAY_DLL="$DLL" timeout --kill-after=10 "$TESTS_TIMEOUT_SECONDS" \
  node --test \
  --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter=tap --test-reporter-destination="$TAP" \
  "${TEST_FILES[@]}"
status=$?
[ "$status" -eq 124 ] && echo "e2e: the tests did not finish within $TESTS_TIMEOUT_SECONDS s." >&2
stop_gateway

# Node's TAP reporter ends with "# pass N", "# fail N", "# cancelled N", "# skipped N", "# todo N".
count() { grep -E "^# $1 [0-9]+$" "$TAP" 2>/dev/null | tail -n 1 | grep -oE '[0-9]+$'; }
pass="$(count pass)"; fail="$(count fail)"; cancelled="$(count cancelled)"; skipped="$(count skipped)"; todo="$(count todo)"
if [ -z "$pass" ] || [ -z "$fail" ]; then
  echo "e2e: the test runner wrote no summary (exit status $status)." >&2
  write_summary "${pass:-0}" 1 "${skipped:-0}"
  exit 1
fi
failed=$((fail + ${cancelled:-0}))
# A crashed or killed runner can leave counters that look clean; trust its exit status too.
if [ "$status" -ne 0 ] && [ "$failed" -eq 0 ]; then
  failed=1
fi
if [ "$failed" -gt 0 ] && [ -f "$GATEWAY_LOG" ]; then
  echo "e2e: the gateway's log ($GATEWAY_LOG), last lines:" >&2
  tail -n 40 "$GATEWAY_LOG" >&2
fi
write_summary "$pass" "$failed" "$((${skipped:-0} + ${todo:-0}))"
[ "$failed" -eq 0 ]
