#!/usr/bin/env bash
# Call records under load, three parts:
#
#  writer   the store alone: RATE_STORE records a second (each opened, then
#           closed, as a call does) for SECONDS into a fresh SQLite store
#           with full durability; every one must be written.
#  calls    short calls (answer, the key-test line for HOLD_MS, the caller's
#           BYE) at CPS for SECONDS with SIPp; every record must be in the
#           store within 5 s of the last call.
#  crash    the same load, the engine killed (-9) halfway and started again:
#           every call the first engine answered has a record (those in
#           progress closed as `interrupted`).
#
#   scripts/bench-store.sh                        # 2000 rec/s, 300 cps, 60 s
#   SECONDS_RUN=20 CPS=100 scripts/bench-store.sh
#   HOTLINE_BIN=/path/to/other/hotline scripts/bench-store.sh   # compare builds
#
# Loopback only; every SIPp run is bounded by -m, -timeout and a deadline.
set -euo pipefail
cd "$(dirname "$0")/.."

RATE_STORE=${RATE_STORE:-2000}
CPS=${CPS:-300}
SECONDS_RUN=${SECONDS_RUN:-60}
HOLD_MS=${HOLD_MS:-2000}
SIP_PORT=${SIP_PORT:-35060}
HTTP_PORT=${HTTP_PORT:-35080}

command -v sipp >/dev/null || { echo "needs SIPp: apt-get install -y sip-tester" >&2; exit 1; }
command -v curl >/dev/null || { echo "needs curl: apt-get install -y curl" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet --bin hotline --example bench_store
bin=${HOTLINE_BIN:-target/release/hotline}

work=$(mktemp -d); [ -n "${KEEP:-}" ] && echo "work dir: $work"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  [ -n "${KEEP:-}" ] || rm -rf "$work"
}
trap cleanup EXIT

if [ -z "${SKIP_WRITER:-}" ]; then
  echo "== writer: $RATE_STORE records/s for $SECONDS_RUN s"
  target/release/examples/bench_store "$work/writer" "$RATE_STORE" "$SECONDS_RUN"
fi

cat > "$work/hotline.yaml" <<EOF
sip: { listen: 127.0.0.1:$SIP_PORT }
http:
  listen: 127.0.0.1:$HTTP_PORT
  tokens: [{ name: bench, token: bench-token, role: read }]
rtp: { ports: 20000-29999 }
sounds-dir: $PWD/sounds
flows-dir: $PWD/ivr-flows
data-dir: $work/data
routes: { default: echo }
schedules:
  support-hours: { time-zone: UTC, weekly: { daily: 00:00-24:00 } }
queues: { sales: {}, support: {}, operator: {} }
trunks:
  - { name: bench, allow: [127.0.0.0/8], symmetric-rtp: false }
shutdown: { drain-timeout: 1s }
EOF

start_engine() { # start_engine LOG
  "$bin" run --config "$work/hotline.yaml" 2>>"$1" &
  pid=$!
  pids+=("$pid")
  for _ in $(seq 200); do grep -q "hotline ready" "$1" && return; sleep 0.1; done
  echo "the engine did not start" >&2; exit 1
}

records() { # records: the call records the API gives for the last day
  curl -sf -H 'Authorization: Bearer bench-token' \
    "http://127.0.0.1:$HTTP_PORT/api/cdrs?since=24h&limit=10000000&format=csv" | tail -n +2 | grep -c . || true
}

load() { # load LOG: SIPp callers at CPS for SECONDS_RUN, in the background
  local n=$((CPS * SECONDS_RUN))
  (cd sipp-scenarios && timeout $((SECONDS_RUN + 90)) sipp -sf caller-basic.xml -s echo -d "$HOLD_MS" \
    -m "$n" -r "$CPS" -l $((CPS * 10)) -i 127.0.0.1 -mi 127.0.0.1 -p 35100 -mp 35200 -cp 35300 \
    -nostdin -timeout $((SECONDS_RUN + 60))s 127.0.0.1:$SIP_PORT > "$1" 2>&1) &
  sipp_pid=$!
}

echo "== calls: $CPS calls/s for $SECONDS_RUN s, $HOLD_MS ms each"
start_engine "$work/engine1.log"
load "$work/sipp1.out"
wait "$sipp_pid" || true
last=$(date +%s.%N)
answered=$(grep -c "answered codec" "$work/engine1.log" || true)
got=0
for _ in $(seq 50); do
  got=$(records)
  [ "$got" -ge "$answered" ] && break
  sleep 0.1
done
after=$(echo "$(date +%s.%N) - $last" | bc -l)
printf 'answered=%s records=%s seconds_after_last_call=%.1f\n' "$answered" "$got" "$after"
[ "$got" -ge "$answered" ] || { echo "FAIL: records missing" >&2; exit 1; }
kill -TERM "$pid"; wait "$pid" 2>/dev/null || true

echo "== crash: the same load, kill -9 after $((SECONDS_RUN / 2)) s"
rm -rf "$work/data"
start_engine "$work/engine2.log"
load "$work/sipp2.out"
sleep $((SECONDS_RUN / 2))
kill -9 "$pid"; wait "$pid" 2>/dev/null || true
answered=$(grep -c "answered codec" "$work/engine2.log" || true)
start_engine "$work/engine3.log"
wait "$sipp_pid" || true
sleep 3
interrupted=$(curl -sf -H 'Authorization: Bearer bench-token' \
  "http://127.0.0.1:$HTTP_PORT/api/cdrs?since=24h&limit=10000000&format=csv" | grep -c ',interrupted,' || true)
total=$(records)
answered_later=$(grep -c "answered codec" "$work/engine3.log" || true)
printf 'answered_before_kill=%s answered_after_restart=%s records=%s interrupted=%s\n' \
  "$answered" "$answered_later" "$total" "$interrupted"
[ "$total" -ge $((answered + answered_later)) ] || { echo "FAIL: records of answered calls lost" >&2; exit 1; }
echo "ok"
