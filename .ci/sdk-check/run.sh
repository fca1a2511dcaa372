#!/usr/bin/env bash
# Start the emulator on a free port, run the SDK conformance check against it
# with the official @vippsmobilepay/sdk, stop the emulator. Exit code: 0 = pass.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
log="$(mktemp)"
emulator_pid=""

cleanup() {
    if [ -n "$emulator_pid" ]; then
        kill "$emulator_pid" 2>/dev/null || true
        wait "$emulator_pid" 2>/dev/null || true
    fi
    rm -f "$log"
}
trap cleanup EXIT

# --port 0: the emulator binds a free port and prints its URL as the first line.
# --approved: the check sends a PUSH_MESSAGE request, which an ordinary sales unit
# (the emulator's default) is refused with 5080.
(cd "$root" && exec python3 -m vipps_emulator --port 0 --approved) >"$log" 2>&1 &
emulator_pid=$!

url=""
for _ in $(seq 1 100); do
    url="$(head -n 1 "$log" 2>/dev/null || true)"
    case "$url" in http://*) break ;; esac
    if ! kill -0 "$emulator_pid" 2>/dev/null; then
        echo "the emulator did not start:" >&2
        cat "$log" >&2
        exit 1
    fi
    sleep 0.1
done
case "$url" in
    http://*) echo "emulator: $url" ;;
    *) echo "the emulator did not print its URL in time" >&2; cat "$log" >&2; exit 1 ;;
esac

cd "$here"
npm ci --silent --no-audit --no-fund
node check.mjs "$url"
