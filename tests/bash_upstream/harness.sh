#!/usr/bin/env bash
# Runs the vendored bash functions (lyrebird_functions.sh) the way lyrebird-stream-manager.sh
# v1.5.0 uses them when it starts streams, on fake hosts, and prints what they decide.
#
#   harness.sh MODE JOBS     (run with LC_ALL=C and an empty environment, as cron gives it)
#
# JOBS: one job a line, `ID<TAB>ROOT<TAB>CONF` (CONF `-` for none). ROOT holds a fake
# `proc/asound` and `dev/snd` (tests/common/fake_host.rs). For each job, in a subshell under
# the tool's own `set -euo pipefail`: DEVICE_CONFIG_FILE=CONF; load_device_config;
# detect_audio_devices; for each `name:card` it prints, generate_stream_path and
# get_device_config of the five parameters with the tool's DEFAULT_* (as
# start_ffmpeg_stream does; with no CONF the five are printed as `-`). Output, fields
# escaped (\\ \t \n \r):
#
#   DEV<TAB>ID<TAB>CARD<TAB>DEVICE_NAME<TAB>STREAM<TAB>SAMPLE_RATE<TAB>CHANNELS<TAB>CODEC<TAB>BITRATE<TAB>THREAD_QUEUE
#   END<TAB>ID<TAB>EXIT_STATUS
#
# What the harness changes, and nothing else:
# - The functions read the fixed paths /proc/asound and /dev/snd: at run time (never in the
#   vendored file) sed rewrites those two path prefixes, and only them, to
#   ${FAKE_ROOT}/proc/asound and ${FAKE_ROOT}/dev/snd.
# - `log` (not vendored: it writes the tool's log file) prints to stderr; `sleep` (the
#   0.5 s retries of detect_audio_devices when by-id has nothing) returns at once.
# - `name:card` is split at the LAST colon (the tool's callers split at the first one with
#   `IFS=':' read`, so a by-id name holding a colon never streamed there; see
#   docs/migration.md).
# - MODE `asis` is the tool. MODE `crlf` first strips a UTF-8 BOM and each line's final CR
#   from a copy of CONF (SPEC §5: CRLF and BOM accepted). MODE `defaults` does that too and
#   lets the file's DEFAULT_* lines count (SPEC §5: DEFAULT_* honoured; the tool's
#   `readonly DEFAULT_*` made them fail), an empty one falling through to the built-in.
#   The two sanctioned modes exist only to classify differences (tests/differential.rs).
set -euo pipefail
mode="$1"
jobs="$2"
here="$(cd "$(dirname "$0")" && pwd)"
case "$mode" in
asis | crlf | defaults) ;;
*)
  echo "unknown mode $mode" >&2
  exit 2
  ;;
esac

rewrite='s#/proc/asound#${FAKE_ROOT}/proc/asound#g; s#/dev/snd#${FAKE_ROOT}/dev/snd#g'
if [[ "$mode" == defaults ]]; then
  rewrite="$rewrite; s/^readonly \\(DEFAULT_[A-Z_]*=\\)/\\1/"
fi
# shellcheck source=/dev/null
source <(sed -e "$rewrite" "$here/lyrebird_functions.sh")

log() { printf 'log %s\n' "$*" >&2; }
sleep() { :; }

esc() {
  local v="$1"
  v="${v//\\/\\\\}"
  v="${v//$'\t'/\\t}"
  v="${v//$'\n'/\\n}"
  v="${v//$'\r'/\\r}"
  printf '%s' "$v"
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

run_job() {
  local id="$1"
  FAKE_ROOT="$2"
  local conf="$3"
  DEVICE_CONFIG_FILE="/nonexistent/audio-devices.conf"
  if [[ "$conf" != "-" ]]; then
    DEVICE_CONFIG_FILE="$conf"
    if [[ "$mode" != asis ]]; then
      DEVICE_CONFIG_FILE="$tmp/$id.conf"
      sed $'1s/^\xef\xbb\xbf//; s/\r$//' "$conf" >"$DEVICE_CONFIG_FILE"
    fi
  fi
  load_device_config
  if [[ "$mode" == defaults ]]; then
    : "${DEFAULT_SAMPLE_RATE:=48000}" "${DEFAULT_CHANNELS:=2}" "${DEFAULT_CODEC:=opus}"
    : "${DEFAULT_BITRATE:=128k}" "${DEFAULT_THREAD_QUEUE:=8192}"
  fi
  local devices=()
  readarray -t devices < <(detect_audio_devices)
  local info device_name card_num stream_path
  for info in "${devices[@]}"; do
    device_name="${info%:*}"
    card_num="${info##*:}"
    stream_path="$(generate_stream_path "$device_name" "$card_num")"
    local sample_rate channels codec bitrate thread_queue
    if [[ "$conf" == "-" ]]; then
      # No device config: only the name is of interest (saves ten processes a device).
      printf 'DEV\t%s\t%s\t%s\t%s\t-\t-\t-\t-\t-\n' "$id" "$(esc "$card_num")" \
        "$(esc "$device_name")" "$(esc "$stream_path")"
      continue
    fi
    sample_rate="$(get_device_config "$device_name" "SAMPLE_RATE" "$DEFAULT_SAMPLE_RATE" "$stream_path")"
    channels="$(get_device_config "$device_name" "CHANNELS" "$DEFAULT_CHANNELS" "$stream_path")"
    codec="$(get_device_config "$device_name" "CODEC" "$DEFAULT_CODEC" "$stream_path")"
    bitrate="$(get_device_config "$device_name" "BITRATE" "$DEFAULT_BITRATE" "$stream_path")"
    thread_queue="$(get_device_config "$device_name" "THREAD_QUEUE" "$DEFAULT_THREAD_QUEUE" "$stream_path")"
    printf 'DEV\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$id" "$(esc "$card_num")" \
      "$(esc "$device_name")" "$(esc "$stream_path")" "$(esc "$sample_rate")" \
      "$(esc "$channels")" "$(esc "$codec")" "$(esc "$bitrate")" "$(esc "$thread_queue")"
  done
}

while IFS=$'\t' read -r id root conf; do
  set +e
  (
    set -euo pipefail
    run_job "$id" "$root" "$conf"
  )
  rc=$?
  set -e
  printf 'END\t%s\t%s\n' "$id" "$rc"
done <"$jobs"
