#!/bin/bash
# monitor_wall.sh: wall time of `mediamtx-stream-manager monitor` against a running
# supervisor with N streams of the fake ffmpeg on a fake host (TESTING.md §5: a benchmark,
# not a test; it reports, never passes or fails on time).
#
#   cargo build && benches/monitor_wall.sh [RUNS=20] [STREAMS=8]
#
# Uses target/debug/mediamtx-stream-manager (or $BIN). Prints the median and the worst.
set -euo pipefail

runs=${1:-20}
streams=${2:-8}
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$here/target/debug/mediamtx-stream-manager}
fake=$here/tests/fixtures/fake-ffmpeg
[[ -x $bin ]] || { echo "build first: cargo build ($bin missing)" >&2; exit 1; }
[[ -x $fake ]] || { echo "fake ffmpeg missing: $fake" >&2; exit 1; }

dir=$(mktemp -d)
sup=
cleanup() {
    # Only what this script started: the supervisor by pid, then its marked children.
    if [[ -n $sup ]]; then kill -KILL "$sup" 2>/dev/null || true; wait "$sup" 2>/dev/null || true; fi
    "$bin" -c "$dir/manager.toml" force-stop >/dev/null 2>&1 || true
    rm -rf "$dir"
}
trap cleanup EXIT

proc=$dir/proc/asound dev=$dir/dev/snd
mkdir -p "$proc" "$dev/by-id" "$dev/by-path"
: >"$proc/cards"
for ((n = 1; n <= streams; n++)); do
    id=mic$n
    mkdir -p "$proc/card$n"
    echo "$id" >"$proc/card$n/id"
    printf '1d6b:%04x\n' "$n" >"$proc/card$n/usbid"
    : >"$dev/controlC$n"; : >"$dev/pcmC${n}D0c"
    ln -s "../controlC$n" "$dev/by-id/usb-Bench_$id-00"
    ln -s "../controlC$n" "$dev/by-path/pci-0000:01:00.0-usb-0:1.$n:1.0"
    printf '%2d [%-15s]: USB-Audio - %s\n                      %s at usb-0000:01:00.0-1.%d, full speed\n' \
        "$n" "$id" "$id" "$id" "$n" >>"$proc/cards"
done

cat >"$dir/manager.toml" <<EOF
[paths]
proc_asound = "$proc"
dev_snd = "$dev"
state_dir = "$dir/state"
log_dir = "$dir/logs"
device_config = "$dir/audio-devices.conf"
ffmpeg = "$fake"
[mediamtx]
api = false
rtsp_url = "rtsp://127.0.0.1:1"
[monitor]
grace = "1s"
EOF

FAKE_FFMPEG_MODE=run "$bin" -c "$dir/manager.toml" start --foreground 2>"$dir/supervisor.err" &
sup=$!
for _ in $(seq 100); do
    up=$("$bin" -c "$dir/manager.toml" status --json 2>/dev/null | grep -c '"state": *"running"' || true)
    if [[ $up -ge $streams ]]; then break; fi
    sleep 0.1
done
[[ $up -ge $streams ]] || { echo "only $up of $streams streams running" >&2; exit 1; }

times=()
for ((i = 0; i < runs; i++)); do
    t0=$(date +%s%N)
    code=0
    env -i PATH=/usr/bin:/bin "$bin" -c "$dir/manager.toml" monitor >"$dir/monitor.out" || code=$?
    t1=$(date +%s%N)
    [[ $code -eq 0 ]] || { echo "run $i: monitor exited $code:" >&2; cat "$dir/monitor.out" >&2; }
    times+=($(((t1 - t0) / 1000000)))
done
sorted=($(printf '%s\n' "${times[@]}" | sort -n))
median=${sorted[$((runs / 2))]}
worst=${sorted[$((runs - 1))]}
echo "monitor wall time over $runs runs, $streams streams: median ${median} ms, worst ${worst} ms"
