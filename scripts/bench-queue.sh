#!/usr/bin/env bash
# Queue benchmark, two parts, each printing calls, failed, the engine's CPU
# (per process, from /proc), RSS and RSS per call, and µs of engine CPU per
# call-second:
#
#  waiting  WAITING callers sit in a queue with no agent, hearing its
#           greeting and looping hold music (no position announcements).
#  bridged  PAIRS callers, each bridged to an agent: PAIRS agents register
#           (digest) from one SIPp port, and one SIPp answering there
#           (-rtp_echo) takes every call; callers stream audio, which is
#           relayed to the agent side and echoed back through the bridge.
#
#   scripts/bench-queue.sh                         # 1000 waiting, 500 pairs, 30 s
#   WAITING=500 PAIRS=200 HOLD=20 scripts/bench-queue.sh
#
# Loopback only; every SIPp run is bounded by -m, -timeout and a deadline.
set -euo pipefail
cd "$(dirname "$0")/.."

WAITING=${WAITING:-1000}
PAIRS=${PAIRS:-500}
HOLD=${HOLD:-30}          # seconds each call stays on the line
RATE=${RATE:-100}         # calls per second while ramping up
SIP_PORT=${SIP_PORT:-35060}
AGENT_PORT=${AGENT_PORT:-35700}

command -v sipp >/dev/null || { echo "needs SIPp: apt-get install -y sip-tester" >&2; exit 1; }
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release --quiet --bin hotline
bin=${HOTLINE_BIN:-target/release/hotline}

work=$(mktemp -d); [ -n "${KEEP:-}" ] && echo "work dir: $work"
trap 'pkill -P $$ 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
mkdir -p "$work/flows"
printf 'entry: q\nnodes:\n  q: { queue: bench }\n' > "$work/flows/q.yaml"

config() { # config AGENTS: the engine's config with that many agents
  cat <<EOF
sip:
  listen: 127.0.0.1:$SIP_PORT
rtp:
  ports: 20000-29999
sounds-dir: $PWD/sounds
data-dir: $work/data
flows-dir: $work/flows
routes: { default: q }
trunks:
  - { name: bench, allow: [127.0.0.0/8] }
queues:
  bench: { announce-position: false, wrap-up: 0s, ring-timeout: 10s }
registrar: { algorithms: [MD5], keepalive: 0s }
calls: { max-duration: 10m, leg-check: 0s }
shutdown: { drain-timeout: 1s }
EOF
  [ "$1" -gt 0 ] && echo "agents:" || echo "agents: []"
  for i in $(seq 1 "$1"); do
    echo "  - { id: 'b$i', password: pw, queues: [bench], auto-login: true }"
  done
}


clk=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
succeeded() { grep -a "Successful call" "$1" | tail -1 | awk -F'|' '{gsub(/ /, "", $3); print $3 + 0}'; }

start_engine() {
  "$bin" run --config "$work/hotline.yaml" 2>"$work/engine.log" &
  pid=$!
  for _ in $(seq 100); do grep -q "hotline ready" "$work/engine.log" && break; sleep 0.1; done
}

# measure CALLS: waits out the ramp, then measures the steady state.
measure() {
  local n=$1
  local ramp=$(( (n + RATE - 1) / RATE ))
  sleep $((ramp + 3))
  local t0 s0 t1 s1
  t0=$(cpu_ticks "$pid"); s0=$(date +%s.%N)
  local window=$((HOLD - 8)); [ "$window" -lt 5 ] && window=5
  sleep "$window"
  t1=$(cpu_ticks "$pid"); s1=$(date +%s.%N)
  rss1=$(rss_kib "$pid")
  cpu_s=$(echo "($t1 - $t0) / $clk" | bc -l)
  wall=$(echo "$s1 - $s0" | bc -l)
  row_cpu=$(echo "100 * $cpu_s / $wall" | bc -l)
  row_us=$(echo "1000000 * $cpu_s / ($wall * $n)" | bc -l)
}

printf '%-8s %-6s %-7s %-8s %-9s %-9s %-10s %-8s\n' part calls failed cpu_% rss_MiB KiB/call us/call-s bridged

# Part 1: waiting callers, no agents.
config 0 > "$work/hotline.yaml"
start_engine
rss0=$(rss_kib "$pid")
ramp=$(( (WAITING + RATE - 1) / RATE ))
(cd sipp-scenarios && timeout $((HOLD + ramp + 60)) sipp -sf caller-basic.xml -s 100 -d $((HOLD * 1000)) \
  -m "$WAITING" -r "$RATE" -l "$WAITING" -i 127.0.0.1 -p 35400 -mp 35500 -cp 35600 \
  -nostdin -timeout $((HOLD + ramp + 40))s 127.0.0.1:$SIP_PORT > "$work/wait.out" 2>&1) &
callers=$!
measure "$WAITING"
wait "$callers" || true
kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
printf '%-8s %-6s %-7s %-8.1f %-9.1f %-9.1f %-10.0f %-8s\n' waiting "$WAITING" \
  "$((WAITING - $(succeeded "$work/wait.out")))" "$row_cpu" "$(echo "$rss1 / 1024" | bc -l)" \
  "$(echo "($rss1 - $rss0) / $WAITING" | bc -l)" "$row_us" -

# Part 2: bridged pairs.
config "$PAIRS" > "$work/hotline.yaml"
start_engine
# Every agent registers from the one port the answering SIPp will use (the
# engine rings agents where their REGISTER came from). SIPp's digest takes
# its user from -au only, so one short run per agent.
registered=0
for i in $(seq 1 "$PAIRS"); do
  if timeout 10 sipp -sf sipp-scenarios/agent-register.xml -s "b$i" -au "b$i" -ap pw -m 1 \
    -i 127.0.0.1 -p "$AGENT_PORT" -cp $((AGENT_PORT + 1)) -nostdin -timeout 5s \
    127.0.0.1:$SIP_PORT > "$work/register.out" 2>&1; then
    registered=$((registered + 1))
  fi
done
for _ in $(seq 50); do
  [ "$(grep -c 'state="available"' "$work/engine.log")" -ge "$registered" ] && break; sleep 0.1
done
ramp=$(( (PAIRS + RATE - 1) / RATE ))
timeout $((HOLD + ramp + 90)) sipp -sn uas -rtp_echo -m "$PAIRS" -i 127.0.0.1 -mi 127.0.0.1 \
  -p "$AGENT_PORT" -mp $((AGENT_PORT + 2)) -cp $((AGENT_PORT + 1)) -nostdin \
  -timeout $((HOLD + ramp + 60))s > "$work/agents.out" 2>&1 &
agents=$!
sleep 0.5
rss0=$(rss_kib "$pid")
(cd sipp-scenarios && timeout $((HOLD + ramp + 60)) sipp -sf caller-load.xml -s 100 -d $((HOLD * 1000)) \
  -m "$PAIRS" -r "$RATE" -l "$PAIRS" -i 127.0.0.1 -p 35400 -mp 35500 -cp 35600 -rtp_threadtasks 1 \
  -nostdin -timeout $((HOLD + ramp + 40))s 127.0.0.1:$SIP_PORT > "$work/pairs.out" 2>&1) &
callers=$!
measure "$PAIRS"
bridged=$(grep -c "answered; caller bridged" "$work/engine.log" || true)
wait "$callers" || true
wait "$agents" || true
kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true
printf '%-8s %-6s %-7s %-8.1f %-9.1f %-9.1f %-10.0f %-8s\n' bridged "$PAIRS" \
  "$((PAIRS - $(succeeded "$work/pairs.out")))" "$row_cpu" "$(echo "$rss1 / 1024" | bc -l)" \
  "$(echo "($rss1 - $rss0) / $PAIRS" | bc -l)" "$row_us" "$bridged"
echo "agents registered: $registered of $PAIRS"
