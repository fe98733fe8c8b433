#!/usr/bin/env bash
# benches/hung.sh [RUNS]: the hung-RTSP-server figures in docs/recording.md. Runs the
# sequences of tests/hung.rs one at a time, RUNS times each (default 5), with real ffmpeg
# and the virtual microphone, and prints per sequence the audio missing (the recording
# gap at the switch, `recording.last_gap_s`; and the longest pause of the output seen
# while the server hung, looking every 250 ms at progress that comes every 0.5 s) and the
# time from the server answering again to the supervisor's publisher sending RECORD,
# with the median. (libtest prints `test NAME ... ` before a test's own output, so the
# figures are picked out of the lines, not from their start.) Reports only; never passes or fails on time.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-5}
out=$(mktemp)
# Run copies of the test binary and of the product, so a rebuild meanwhile changes nothing.
bin=$(mktemp -d)
trap 'rm -rf "$out" "$bin"' EXIT
test_exe=$(cargo test --test hung --no-run --message-format=json 2>/dev/null |
    sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1)
cargo build --bin mediamtx-stream-manager >/dev/null 2>&1
cp "$test_exe" "$bin/hung"
cp target/debug/mediamtx-stream-manager "$bin/"
for t in a_hung_from_start c_hung_server_comes_back b_c_server_stops_reading d_connect_never; do
    for ((i = 1; i <= runs; i++)); do
        MSM_TEST_BIN=$bin/mediamtx-stream-manager "$bin/hung" "$t" --nocapture --test-threads 1 2>&1 |
            grep -oE '\((a|b|c|d)\) .*|^test .*FAILED' | tee -a "$out" || true
    done
done
set +e +o pipefail
median() { sort -g | awk '{v[NR]=$1} END {if (NR) print v[int((NR+1)/2)]; else print "-"}'; }
echo "runs: $runs"
for key in '(a) first segment' '(a) longest output pause' '(c) longest output pause' '(d) longest output pause'; do
    vals=$(grep -F "$key" "$out" | sed -E 's/.*[: ]([0-9.]+)s( after start)?$/\1/')
    echo "$key: $(echo $vals) median $(echo "$vals" | median)"
done
for key in '(c) after (a)' '(c) after (b)' '(d) publishing again'; do
    pub=$(grep -F "$key" "$out" | sed -E 's/.*again ([0-9.]+)s after.*/\1/')
    gap=$(grep -F "$key" "$out" | sed -E 's/.*gap ([0-9.]+)s$/\1/')
    echo "$key: publish again $(echo $pub) median $(echo "$pub" | median); gap $(echo $gap) median $(echo "$gap" | median)"
done
grep -F '(b) RTSP leg given up' "$out" | sed -E 's/.*up ([0-9.]+)s.*/\1/' |
    { vals=$(cat); echo "(b) leg given up after stop-reading: $(echo $vals) median $(echo "$vals" | median)"; }
