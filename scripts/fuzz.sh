#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/, two at a time (this machine has
# two cores), each from its seeds (fuzz/seeds/TARGET) and a corpus kept in
# fuzz/corpus/TARGET: the parsers that face the network or the user for
# LONG seconds each (default 600), the config, dial plan, prompt decoding
# and flow loader for SHORT (default 120). Crashes land in fuzz/artifacts/;
# a crasher that a fix refuses belongs in fuzz/seeds/TARGET/regression-*
# with a unit test that replays it. Needs cargo-fuzz (`cargo install
# cargo-fuzz`); on a stable toolchain RUSTC_BOOTSTRAP=1 lets it use the
# sanitizer flags. Not part of the test command: it is a campaign.
#
#   scripts/fuzz.sh            # 6 x 10 min + 4 x 2 min, about 35 min
#   scripts/fuzz.sh 60 20      # a quick pass
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
long=${1:-600}
short=${2:-120}
command -v cargo-fuzz >/dev/null || { echo "fuzz.sh: cargo install cargo-fuzz" >&2; exit 1; }
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O
run() {
  mkdir -p "corpus/$1"
  if cargo fuzz run -O "$1" "corpus/$1" "seeds/$1" -- -max_total_time="$2" -print_final_stats=1 \
      > "target/fuzz-$1.log" 2>&1; then
    echo "$1: $(grep -m1 'stat::number_of_executed_units' "target/fuzz-$1.log" | awk '{print $2}') inputs, no crash"
  else
    echo "$1: CRASHED, see fuzz/target/fuzz-$1.log and fuzz/artifacts/$1/"
    return 1
  fi
}
group() {
  local rc=0 t
  for t in "$@"; do
    case "$t" in
      config|flow_loader|sdp|dial_plan|prompt_decode) run "$t" "$short" || rc=1 ;;
      *) run "$t" "$long" || rc=1 ;;
    esac
  done
  return $rc
}
group sip_message rtp digest api_input config flow_loader & a=$!
group dtmf_info tcp_framing webhook_answer sdp dial_plan prompt_decode & b=$!
status=0
wait $a || status=1
wait $b || status=1
exit $status
