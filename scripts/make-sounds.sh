#!/usr/bin/env bash
# Generates every prompt Hotline ships, plus its hold-music loop, as 8 kHz mono
# 16-bit WAV under sounds/. The results are committed, so running Hotline needs
# neither espeak-ng nor sox; run this only to change or add a prompt.
#   apt-get install -y espeak-ng sox
set -euo pipefail
cd "$(dirname "$0")/.."
for tool in espeak-ng sox; do
  command -v "$tool" >/dev/null || { echo "needs $tool: apt-get install -y espeak-ng sox" >&2; exit 1; }
done
out=sounds
mkdir -p "$out/agent" "$out/digits" "$out/numbers" "$out/time" "$out/menu" "$out/ask" "$out/queue" "$out/callback" "$out/music"

say() { # say FILE TEXT: speak TEXT into FILE (8 kHz mono s16, light padding)
  local file=$1; shift
  local tmp; tmp=$(mktemp --suffix=.wav)
  espeak-ng -v en-us -s 150 -w "$tmp" "$*"
  sox -q "$tmp" -r 8000 -c 1 -b 16 "$out/$file.wav" pad 0.1 0.2 norm -3
  rm -f "$tmp"
}

say welcome "Welcome to Hotline. Press any key and I will say it back. Press pound to hang up."
say goodbye "Thank you for calling. Goodbye."
say greeting "Thank you for calling Hotline."
say please-hold "Please hold. Your call is important to us."
for d in 0 1 2 3 4 5 6 7 8 9; do say "digits/$d" "$d"; done
say digits/star "star"
# Numbers and durations, for `say: number` and `say: duration` in flows.
for n in $(seq 0 19) 20 30 40 50 60 70 80 90; do say "numbers/$n" "$n"; done
say numbers/hundred "hundred"
say numbers/thousand "thousand"
say numbers/million "million"
say numbers/billion "billion"
say numbers/minus "minus"
for u in hour minute second; do say "time/$u" "$u"; say "time/${u}s" "${u}s"; done
say digits/pound "pound"
say menu/main "For sales, press 1. For support, press 2. To hear our opening hours, press 3. To leave a message, press 9. For the operator, press 0."
say menu/invalid "Sorry, that is not a valid choice."
say menu/no-input "Sorry, I did not hear your choice."
say menu/hours "We are open Monday to Friday, from 9 in the morning until 5 in the afternoon."
say menu/closed "We are closed right now. Please call again during our opening hours."
say ask/account "Please enter your account number, followed by the pound key."
say ask/voicemail "Please leave your message after the tone. Press pound when you are done."
say ask/you-entered "You entered"
say ask/confirm-entry "If this is correct, press 1. To enter it again, press 2."
say ask/survey "On a scale of 0 to 10, how likely are you to recommend us? Press a digit now."
say queue/you-are-caller "You are caller number"
say queue/in-line "in line."
say queue/about "Your expected wait is about"
say queue/minutes "minutes."
say queue/minute "minute."
say queue/thanks-waiting "Thank you for waiting. An agent will be with you shortly."
say agent/logged-in "You are logged in."
say agent/logged-out "You are logged out."
say agent/paused "You are paused."
say agent/available "You are available."
say agent/not-allowed "Sorry, that is not possible now."
say callback/offer "To hang up and keep your place in line, press 1. We will call you back."
say callback/confirm-number "We will call you back at"
say callback/press-1-correct "If this is correct, press 1. To enter another number, press 2."
say callback/enter-number "Please enter the number we should call, followed by the pound key."
say callback/booked "Your callback is booked. You keep your place in line. Goodbye."
say callback/this-is "This is your callback from Hotline. Press 1 to be connected to an agent."
say callback/refused "Sorry, we cannot call that number."
say callback/for "Callback for"
say callback/waited "who waited"

# The tone before a recording starts.
sox -q -n -r 8000 -c 1 -b 16 "$out/beep.wav" synth 0.4 sine 1000 vol 0.5 pad 0.05 0.05

# Hold music: our own, synthesized: a slow I–vi–IV–V progression of soft
# plucked chords, 16 s, looping seamlessly.
tmpd=$(mktemp -d)
i=0
for chord in "C4 E4 G4" "A3 C4 E4" "F3 A3 C4" "G3 B3 D4"; do
  set -- $chord
  sox -q -n -r 8000 -c 1 -b 16 "$tmpd/c$i.wav" synth 4 pluck "$1" pluck "$2" pluck "$3" fade q 0.05 4 0.6 vol 0.5
  i=$((i + 1))
done
sox -q "$tmpd"/c0.wav "$tmpd"/c1.wav "$tmpd"/c2.wav "$tmpd"/c3.wav "$out/music/default.wav" norm -6
rm -rf "$tmpd"
echo "sounds written to $out/"
