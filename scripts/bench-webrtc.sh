#!/usr/bin/env bash
# Browser-agent benchmark: PAIRS callers (SIPp, streaming µ-law) each
# bridged to a browser agent. The agents are webrtc-rs's own full-ICE
# peers in one load-generator process (examples/webrtc_load.rs): they sign
# in at the desktop, answer each ring (DTLS-SRTP, PCMU) and send a 20 ms
# frame every 20 ms. Prints, for the engine and the load generator
# separately: CPU %, µs of CPU per pair-second, RSS and RSS per leg; and
# how many pairs connected and the frames each side counted.
#
#   scripts/bench-webrtc.sh                    # 200 pairs, 30 s
#   PAIRS=50 HOLD=20 scripts/bench-webrtc.sh
#   HOTLINE_BIN=/path/to/other/hotline scripts/bench-webrtc.sh
#   CODEC=opus scripts/bench-webrtc.sh         # browser legs in Opus (transcoded)
#
# Loopback only; every run is bounded by -m, -timeout and a deadline.
set -euo pipefail
cd "$(dirname "$0")/.."

PAIRS=${PAIRS:-200}
HOLD=${HOLD:-30}          # seconds each call stays on the line
RATE=${RATE:-20}          # calls per second while ramping up
SIP_PORT=${SIP_PORT:-36060}
HTTP_PORT=${HTTP_PORT:-36080}
WEBRTC_PORT=${WEBRTC_PORT:-36090}
PEER_BASE=${PEER_BASE:-36100}   # the peers' UDP ports: PEER_BASE+1 …
CODEC=${CODEC:-g711}            # webrtc.codec: g711 (straight through) or opus

command -v sipp >/dev/null || { echo "needs SIPp: apt-get install -y sip-tester" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
if [ -z "${HOTLINE_BIN:-}" ] || [ -z "${LOADGEN:-}" ]; then
  cargo build --release --quiet --bin hotline --example webrtc_load
fi
bin=${HOTLINE_BIN:-target/release/hotline}
loadgen=${LOADGEN:-target/release/examples/webrtc_load}

work=$(mktemp -d); [ -n "${KEEP:-}" ] && echo "work dir: $work"
trap 'pkill -P $$ 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
mkdir -p "$work/flows"
printf 'entry: q\nnodes:\n  q: { queue: bench }\n' > "$work/flows/q.yaml"
{
  cat <<EOF
sip:
  listen: 127.0.0.1:$SIP_PORT
http:
  listen: 127.0.0.1:$HTTP_PORT
  connections: { max: 4096, per-source: 4096 }
rtp:
  ports: 20000-29999
webrtc: { port: $WEBRTC_PORT, codec: $CODEC }
sounds-dir: $PWD/sounds
data-dir: $work/data
flows-dir: $work/flows
routes: { default: q }
trunks:
  - { name: bench, allow: [127.0.0.0/8] }
queues:
  bench: { announce-position: false, wrap-up: 0s, ring-timeout: 10s }
calls: { max-duration: 10m, leg-check: 0s }
shutdown: { drain-timeout: 1s }
agents:
EOF
  for i in $(seq 1 "$PAIRS"); do
    echo "  - { id: 'w$i', password: pw, queues: [bench] }"
  done
} > "$work/hotline.yaml"

clk=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
succeeded() { grep -a "Successful call" "$1" | tail -1 | awk -F'|' '{gsub(/ /, "", $3); print $3 + 0}'; }

"$bin" run --config "$work/hotline.yaml" 2>"$work/engine.log" &
pid=$!
for _ in $(seq 100); do grep -q "hotline ready" "$work/engine.log" && break; sleep 0.1; done
ramp=$(( (PAIRS + RATE - 1) / RATE ))
WEBRTC_LOAD_CODEC=$CODEC "$loadgen" "127.0.0.1:$HTTP_PORT" w "$PAIRS" pw $((HOLD + ramp + 30)) 127.0.0.1 "$PEER_BASE" \
  > "$work/loadgen.out" 2> "$work/loadgen.err" &
gen=$!
for _ in $(seq 600); do grep -q "^ready" "$work/loadgen.err" && break; sleep 0.1; done
grep "^ready" "$work/loadgen.err" || { echo "the load generator never got ready" >&2; cat "$work/loadgen.err" >&2; exit 1; }
rss0=$(rss_kib "$pid"); grss0=$(rss_kib "$gen")
(cd sipp-scenarios && timeout $((HOLD + ramp + 60)) sipp -sf caller-load.xml -s 100 -d $((HOLD * 1000)) \
  -m "$PAIRS" -r "$RATE" -l "$PAIRS" -i 127.0.0.1 -p 36400 -mp 36500 -cp 36600 -rtp_threadtasks 1 \
  -nostdin -timeout $((HOLD + ramp + 40))s 127.0.0.1:$SIP_PORT > "$work/callers.out" 2>&1) &
callers=$!

# The steady state: after the ramp, for most of the hold.
sleep $((ramp + 4))
t0=$(cpu_ticks "$pid"); g0=$(cpu_ticks "$gen"); s0=$(date +%s.%N)
window=$((HOLD - 10)); [ "$window" -lt 5 ] && window=5
sleep "$window"
t1=$(cpu_ticks "$pid"); g1=$(cpu_ticks "$gen"); s1=$(date +%s.%N)
rss1=$(rss_kib "$pid"); grss1=$(rss_kib "$gen")
bridged=$(grep -c "answered; caller bridged" "$work/engine.log" || true)
wait "$callers" || true
wait "$gen" || true
kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true

wall=$(echo "$s1 - $s0" | bc -l)
row() { # row NAME TICKS0 TICKS1 RSS0 RSS1 LEGS
  local cpu_s; cpu_s=$(echo "($3 - $2) / $clk" | bc -l)
  printf '%-10s %-8.1f %-12.0f %-9.1f %-9.1f\n' "$1" "$(echo "100 * $cpu_s / $wall" | bc -l)" \
    "$(echo "1000000 * $cpu_s / ($wall * $PAIRS)" | bc -l)" "$(echo "$5 / 1024" | bc -l)" \
    "$(echo "($5 - $4) / $6" | bc -l)"
}
printf '%-10s %-8s %-12s %-9s %-9s\n' process cpu_% us/pair-s rss_MiB KiB/leg
# The engine holds two legs a pair (caller and browser); the generator one.
row engine "$t0" "$t1" "$rss0" "$rss1" $((PAIRS * 2))
row loadgen "$g0" "$g1" "$grss0" "$grss1" "$PAIRS"
echo "codec: $CODEC, pairs: $PAIRS, callers completed: $(succeeded "$work/callers.out"), bridged: $bridged"
echo "load generator: $(cat "$work/loadgen.out")"
