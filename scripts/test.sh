#!/usr/bin/env bash
# Runs Hotline's whole test suite: unit tests and the real-peer tests that
# start the hotline binary on loopback and call it with SIPp and baresip,
# and load the wallboard and the agent desktop in headless Chromium.
#
# It installs what the tests need when run as root (Debian/Ubuntu), or stops
# with the exact command to run. No real-peer test is ever skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=()
command -v sipp >/dev/null 2>&1 || packages+=(sip-tester)
[ -e /usr/share/sip-tester/dtmf_2833_1.pcap ] || packages+=(sip-tester)
[ -e /usr/lib/baresip/modules/sndfile.so ] || packages+=(baresip-core)
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
command -v fail2ban-regex >/dev/null 2>&1 || packages+=(fail2ban)
command -v nft >/dev/null 2>&1 || packages+=(nftables)
command -v dnsmasq >/dev/null 2>&1 || packages+=(dnsmasq-base)
command -v openssl >/dev/null 2>&1 || packages+=(openssl)
command -v promtool >/dev/null 2>&1 || packages+=(prometheus)
# An agent's browser behind a strict firewall reaches the engine through TURN.
command -v turnserver >/dev/null 2>&1 || packages+=(coturn)
# JsSIP (a third-party browser phone) comes from npm when a test first needs it.
command -v npm >/dev/null 2>&1 || packages+=(npm)
# The package test: dpkg -i runs adduser; the unit is checked by systemd-analyze.
command -v adduser >/dev/null 2>&1 || packages+=(adduser)
command -v systemd-analyze >/dev/null 2>&1 || packages+=(systemd)
if [ ${#packages[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    echo "test.sh: installing ${packages[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}" >/dev/null
  else
    echo "test.sh: the tests need SIPp, baresip, Chromium, fail2ban, nftables, dnsmasq, promtool (prometheus), coturn and npm. Run: sudo apt-get install -y ${packages[*]}" >&2
    exit 1
  fi
fi

# The package test builds the Debian package with cargo-deb (pinned: it
# packs the suite's debug binary, which later versions may refuse).
if ! cargo deb --version 2>/dev/null | grep -q '^cargo-deb 3\.8\.0$'; then
  echo "test.sh: installing cargo-deb 3.8.0"
  cargo install cargo-deb --version 3.8.0 --locked --quiet || exit 1
fi

# SIPp plays RFC 4733 DTMF captures through a raw socket: root, or sipp with CAP_NET_RAW.
if [ "$(id -u)" != 0 ] && ! getcap "$(command -v sipp)" 2>/dev/null | grep -q cap_net_raw; then
  echo "test.sh: SIPp needs raw sockets for the DTMF tests. Run as root, or once:" >&2
  echo "  sudo setcap cap_net_raw+eip $(command -v sipp)" >&2
  exit 1
fi

# No SIPp is ended here by name: that would end a user's own load test too.
# Every SIPp a test starts has its own ports (-p, -mp, -cp) and a -timeout,
# so a leftover of an interrupted run ends by itself and holds no port
# another test uses.

log=$(mktemp)
long_log=$(mktemp)
trap 'rm -f "$log" "$long_log"' EXIT
set +e
# The session-timer calls last minutes by nature (RFC 4028's least interval
# is 90 s) and are idle meanwhile: on a full run their binary runs beside
# the rest instead of after it. It is `test = false` in Cargo.toml; with
# arguments (a selection of yours) add `--test session_timers` to run it.
long_pid=
if [ $# -eq 0 ]; then
  cargo test --no-run --lib --bins --tests --test session_timers || exit 1
  cargo test --no-fail-fast --test session_timers >"$long_log" 2>&1 &
  long_pid=$!
fi
cargo test --no-fail-fast --lib --bins --tests "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if [ -n "$long_pid" ]; then
  wait "$long_pid"
  long_status=$?
  tee -a "$log" <"$long_log"
  [ "$long_status" = 0 ] || status=$long_status
fi
set -e
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "tests: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
