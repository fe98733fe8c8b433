# benches/lib.sh: shared by the benchmark scripts (source it). A fake host with N USB
# microphones (TESTING.md §1) and a manager.toml pointing at it and the fake ffmpeg.
# Benchmarks report; they never pass or fail on time (TESTING.md §5).

# make_host DIR N: DIR/proc/asound + DIR/dev/snd with cards 1..N named mic1..micN.
make_host() {
    local dir=$1 streams=$2 n id
    local proc=$dir/proc/asound dev=$dir/dev/snd
    mkdir -p "$proc" "$dev/by-id" "$dev/by-path"
    : >"$proc/cards.tmp"
    for ((n = 1; n <= streams; n++)); do
        id=mic$n
        mkdir -p "$proc/card$n"
        echo "$id" >"$proc/card$n/id"
        printf '1d6b:%04x\n' "$n" >"$proc/card$n/usbid"
        : >"$dev/controlC$n"; : >"$dev/pcmC${n}D0c"
        ln -sfn "../controlC$n" "$dev/by-id/usb-Bench_$id-00"
        ln -sfn "../controlC$n" "$dev/by-path/pci-0000:01:00.0-usb-0:1.$n:1.0"
        printf '%2d [%-15s]: USB-Audio - %s\n                      %s at usb-0000:01:00.0-1.%d, full speed\n' \
            "$n" "$id" "$id" "$id" "$n" >>"$proc/cards.tmp"
    done
    mv "$proc/cards.tmp" "$proc/cards"
}

# write_config DIR FAKE [EXTRA-TOML]: DIR/manager.toml for the host made by make_host.
write_config() {
    local dir=$1 fake=$2 extra=${3:-}
    cat >"$dir/manager.toml" <<EOT
[paths]
proc_asound = "$dir/proc/asound"
dev_snd = "$dir/dev/snd"
state_dir = "$dir/state"
log_dir = "$dir/logs"
device_config = "$dir/audio-devices.conf"
names_file = "$dir/names.json"
ffmpeg = "$fake"
[mediamtx]
api = false
rtsp_url = "rtsp://127.0.0.1:1"
[monitor]
grace = "1s"
$extra
EOT
}

# count_running BIN CFG: streams in state "running" per `status --json`.
count_running() {
    "$1" -c "$2" status --json 2>/dev/null | grep -o '"state": *"running"' | wc -l || true
}

# wait_running BIN CFG N [TRIES]: poll every 0.1 s until N streams run; fails otherwise.
wait_running() {
    local bin=$1 cfg=$2 want=$3 tries=${4:-600} up=0 i
    for ((i = 0; i < tries; i++)); do
        up=$(count_running "$bin" "$cfg")
        [[ $up -ge $want ]] && return 0
        sleep 0.1
    done
    echo "only $up of $want streams running" >&2
    return 1
}
