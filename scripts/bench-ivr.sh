#!/usr/bin/env bash
# IVR benchmark: SIPp callers at stepped concurrency, each on the line for
# HOLD seconds streaming audio while the engine plays a looping prompt.
# Per step it prints: calls failed, the engine's CPU (per process, from
# /proc), RSS and RSS per call, and the outbound RTP gaps measured on a sample
# of calls by an RTP sink of ours (SIPp never reads the audio it gets back).
# The headline figure is µs of engine CPU per call-second.
#
#   scripts/bench-ivr.sh                 # steps 250 500 1000 2000 3000, 30 s each
#   STEPS="500 1000" HOLD=20 scripts/bench-ivr.sh
#   SRTP=1 CALLER_AUDIO=0 scripts/bench-ivr.sh  # the same with SRTP: callers
#                                         # offer a=crypto (SDES, keys over UDP on
#                                         # this bench trunk only) and the engine
#                                         # protects every packet it sends; SIPp
#                                         # cannot decrypt, so callers stay silent
#   CALLER_AUDIO=0 scripts/bench-ivr.sh  # callers send no RTP (the engine still
#                                         # sends every call's audio): SIPp's RTP
#                                         # streaming costs ~0.07 % of a core per
#                                         # call, which starves a 2-core machine
#                                         # past ~1,000 calls
#
# Loopback only; every SIPp run is bounded by -m, -timeout and a deadline.
set -euo pipefail
cd "$(dirname "$0")/.."

STEPS=${STEPS:-"250 500 1000 2000 3000"}
HOLD=${HOLD:-30}          # seconds each call stays on the line
RATE=${RATE:-200}         # calls per second while ramping up
SAMPLE=${SAMPLE:-20}      # calls whose audio goes to the sink
SIP_PORT=${SIP_PORT:-35060}
SINK_PORT=${SINK_PORT:-39000}
CALLER_AUDIO=${CALLER_AUDIO:-1}
SRTP=${SRTP:-0}
if [ "$SRTP" = 1 ] && [ "$CALLER_AUDIO" = 1 ]; then
  echo "SRTP=1 needs CALLER_AUDIO=0 (SIPp cannot send SRTP)" >&2; exit 1
fi

command -v sipp >/dev/null || { echo "needs SIPp: apt-get install -y sip-tester" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

cargo build --release --quiet --bin hotline --example rtp_sink
bin=${HOTLINE_BIN:-target/release/hotline}  # HOTLINE_BIN compares another build
sink=target/release/examples/rtp_sink
work=$(mktemp -d)
trap 'pkill -P $$ 2>/dev/null || true; rm -rf "$work"' EXIT

cat > "$work/hotline.yaml" <<EOF
sip:
  listen: 127.0.0.1:$SIP_PORT
rtp:
  ports: 20000-29999
sounds-dir: $PWD/sounds
data-dir: $work/data
trunks:
  - name: bench
    allow: [127.0.0.0/8]
    symmetric-rtp: false
    media-encryption: $([ "$SRTP" = 1 ] && echo optional || echo none)
    insecure-media-keys-over-plain-sip: true
flows-dir: $work/flows
routes: { default: hold }
queues:
  bench: { greeting: null, music: music/default, announce-position: false }
calls:
  max-duration: 10m
shutdown:
  drain-timeout: 1s
EOF
# Every call goes straight to a queue: the engine loops the hold music.
mkdir -p "$work/flows"
printf 'entry: hold\nnodes:\n  hold: { queue: bench }\n' > "$work/flows/hold.yaml"
# The sample callers send no RTP, so their SDP port (the sink) is where audio goes.
sed "s/m=audio \[media_port\]/m=audio $SINK_PORT/" sipp-scenarios/caller-basic.xml > "$work/sample.xml"
# With SRTP the callers offer an SDES key (a fixed one: SIPp never uses it).
key="a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"
cp sipp-scenarios/caller-basic.xml "$work/caller-basic.xml"
if [ "$SRTP" = 1 ]; then
  for f in "$work/sample.xml" "$work/caller-basic.xml"; do
    sed -i "s|^\( *\)a=rtpmap:0 PCMU/8000|&\n\1$key|" "$f"
  done
  grep -q "a=crypto" "$work/caller-basic.xml" || { echo "no a=crypto in the scenario" >&2; exit 1; }
fi

clk=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# Calls that did not succeed: SIPp's "Successful call" count against the calls placed.
succeeded() { grep -a "Successful call" "$1" | tail -1 | awk -F'|' '{gsub(/ /, "", $3); print $3 + 0}'; }

printf '%-6s %-7s %-8s %-9s %-9s %-10s %-12s %-11s %-11s %-8s\n' \
  calls failed cpu_% rss_MiB KiB/call us/call-s gap_p99_ms gap_max_ms sink_strms sipp_cpu%
for n in $STEPS; do
  "$bin" run --config "$work/hotline.yaml" 2>"$work/engine.log" &
  pid=$!
  for _ in $(seq 100); do grep -q "hotline ready" "$work/engine.log" && break; sleep 0.1; done
  rss0=$(rss_kib "$pid")
  ramp=$(( (n + RATE - 1) / RATE ))
  "$sink" "$SINK_PORT" $((HOLD + ramp + 5)) > "$work/sink.txt" &
  sinkpid=$!
  load=$((n - SAMPLE))
  timeout $((HOLD + ramp + 60)) sipp -sf "$work/sample.xml" -s 100 -d $((HOLD * 1000)) \
    -m "$SAMPLE" -r "$SAMPLE" -l "$SAMPLE" -i 127.0.0.1 -p 35100 -mp 35200 -cp 35300 \
    -nostdin -timeout $((HOLD + ramp + 40))s 127.0.0.1:$SIP_PORT > "$work/sample.out" 2>&1 &
  samplepid=$!
  if [ "$CALLER_AUDIO" = 1 ]; then scenario=caller-load.xml; else scenario=$work/caller-basic.xml; fi
  (cd sipp-scenarios && timeout $((HOLD + ramp + 60)) sipp -sf "$scenario" -s 100 -d $((HOLD * 1000)) \
    -m "$load" -r "$RATE" -l "$load" -i 127.0.0.1 -p 35400 -mp 35500 -cp 35600 \
    -rtp_threadtasks 1 \
    -nostdin -timeout $((HOLD + ramp + 40))s 127.0.0.1:$SIP_PORT > "$work/load.out" 2>&1) &
  loadpid=$!
  # Measure the steady state: after the ramp, for most of the hold time.
  sleep $((ramp + 3))
  sipp_pids=$(pgrep -x sipp | tr '\n' ' ')
  sipp_ticks() { local t=0; for p in $sipp_pids; do t=$((t + $(cpu_ticks "$p" 2>/dev/null || echo 0))); done; echo $t; }
  t0=$(cpu_ticks "$pid"); p0=$(sipp_ticks); s0=$(date +%s.%N)
  window=$((HOLD - 8)); [ "$window" -lt 5 ] && window=5
  sleep "$window"
  t1=$(cpu_ticks "$pid"); p1=$(sipp_ticks); s1=$(date +%s.%N)
  rss1=$(rss_kib "$pid")
  wait "$loadpid" || true
  wait "$samplepid" || true
  wait "$sinkpid" || true
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  cpu_s=$(echo "($t1 - $t0) / $clk" | bc -l)
  wall=$(echo "$s1 - $s0" | bc -l)
  fails=$(( n - $(succeeded "$work/load.out") - $(succeeded "$work/sample.out") ))
  gap99=$(sed -n 's/.*gap_p99_ms=\([0-9.]*\).*/\1/p' "$work/sink.txt")
  gapmax=$(sed -n 's/.*gap_max_ms=\([0-9.]*\).*/\1/p' "$work/sink.txt")
  streams=$(sed -n 's/.*streams=\([0-9]*\).*/\1/p' "$work/sink.txt")
  printf '%-6s %-7s %-8.1f %-9.1f %-9.1f %-10.0f %-12s %-11s %-11s %-8.0f\n' \
    "$n" "$fails" "$(echo "100 * $cpu_s / $wall" | bc -l)" "$(echo "$rss1 / 1024" | bc -l)" \
    "$(echo "($rss1 - $rss0) / $n" | bc -l)" "$(echo "1000000 * $cpu_s / ($wall * $n)" | bc -l)" \
    "${gap99:-?}" "${gapmax:-?}" "${streams:-0}" "$(echo "100 * ($p1 - $p0) / $clk / $wall" | bc -l)"
  sleep 2
done
