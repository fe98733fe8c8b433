# Vendored from https://github.com/tomtom215/LyreBirdAudio
#   file:   lyrebird-stream-manager.sh (VERSION="1.5.0")
#   commit: 8d1a70994a4f89cdd6b47d9cdf15b00878ce75cd
# Copyright the LyreBirdAudio authors. Licensed under the Apache License, Version 2.0
# (see LICENSE in this directory, copied from the same commit). Extracted verbatim by
# tests/bash_upstream/extract.sh: only the constants and functions below, unmodified.
# Used only by tests/differential.rs, through tests/bash_upstream/harness.sh.

readonly DEFAULT_SAMPLE_RATE="${DEFAULT_SAMPLE_RATE:-48000}"
readonly DEFAULT_CHANNELS="${DEFAULT_CHANNELS:-2}"
readonly DEFAULT_CODEC="${DEFAULT_CODEC:-opus}"
readonly DEFAULT_BITRATE="${DEFAULT_BITRATE:-128k}"
readonly DEFAULT_THREAD_QUEUE="${DEFAULT_THREAD_QUEUE:-8192}"
readonly MAX_STREAM_NAME_LENGTH=48
readonly MIN_STREAM_NAME_LENGTH=1
readonly RESERVED_STREAM_NAMES="control|stats|api|metrics|health"

load_device_config() {
    [[ -f "${DEVICE_CONFIG_FILE}" ]] || return 0

    # A device config truncated by a power loss mid-write, corrupted by SD-card
    # bit-rot, or fat-fingered by an operator would otherwise be `source`d
    # directly: a syntax error then aborts the WHOLE run under errexit, so
    # `start` fails and NO streams come up on the next unattended boot -- a
    # total outage triggered by one bad line. Validate syntax first and, on
    # failure, fall back to built-in defaults (degrade, don't die).
    if ! bash -n "${DEVICE_CONFIG_FILE}" 2>/dev/null; then
        log ERROR "Device config ${DEVICE_CONFIG_FILE} is corrupt (syntax error); ignoring it and using defaults"
        return 0
    fi

    # Even syntactically valid config is sourced defensively: a `set -e`/command
    # inside it must not abort or hang the manager. Source in the current shell
    # (values must persist) but neutralise errexit for the duration.
    local _had_errexit=0
    [[ $- == *e* ]] && _had_errexit=1
    set +e
    # shellcheck source=/dev/null
    source "${DEVICE_CONFIG_FILE}"
    local _src_rc=$?
    [[ $_had_errexit -eq 1 ]] && set -e
    if [[ $_src_rc -ne 0 ]]; then
        log WARN "Device config ${DEVICE_CONFIG_FILE} raised errors while loading (rc=${_src_rc}); continuing with whatever loaded plus defaults"
    fi
    return 0
}

sanitize_device_name() {
    local name="$1"
    local sanitized
    sanitized=$(printf '%s' "$name" | sed 's/[^a-zA-Z0-9]/_/g; s/__*/_/g; s/^_//; s/_$//')

    if [[ "$sanitized" =~ ^[0-9] ]]; then
        sanitized="dev_${sanitized}"
    fi

    if [[ -z "$sanitized" ]]; then
        sanitized="unknown_device_$(date +%s)"
    fi

    printf '%s\n' "$sanitized"
}

sanitize_path_name() {
    local name="$1"
    name="${name#usb-audio-}"
    name="${name#usb_audio_}"
    local sanitized
    sanitized="$(echo "$name" | tr '[:upper:]' '[:lower:]' | sed 's/[^0-9a-z]/_/g' | sed 's/__*/_/g' | sed 's/^_*//;s/_*$//')"

    # Generate fallback if empty
    if [[ -z "$sanitized" ]]; then
        sanitized="stream_$(date +%s)"
    fi

    # Check reserved words
    if [[ "$sanitized" =~ ^(${RESERVED_STREAM_NAMES})$ ]]; then
        log WARN "Stream name '$sanitized' is reserved, adding prefix"
        sanitized="stream_${sanitized}"
    fi

    # Enforce length limits
    if [[ ${#sanitized} -gt $MAX_STREAM_NAME_LENGTH ]]; then
        local hash
        hash="$(echo -n "$sanitized" | md5sum | cut -c1-8)"
        sanitized="${sanitized:0:$((MAX_STREAM_NAME_LENGTH - 9))}_${hash}"
        log DEBUG "Truncated long stream name to: $sanitized"
    fi

    if [[ ${#sanitized} -lt $MIN_STREAM_NAME_LENGTH ]]; then
        sanitized="stream_$(date +%s)"
        log WARN "Stream name too short, using fallback: $sanitized"
    fi

    echo "$sanitized"
}

get_device_config() {
    local device_name="$1"
    local param="$2"
    local default_value="$3"
    local stream_path="${4:-}" # Optional friendly stream path

    local config_value=""

    # Strategy 1: Try friendly stream name first (if provided)
    if [[ -n "$stream_path" ]]; then
        local friendly_name
        friendly_name="$(sanitize_device_name "$stream_path")"
        local friendly_key="DEVICE_${friendly_name^^}_${param^^}"

        if [[ -n "${!friendly_key+x}" ]]; then
            config_value="${!friendly_key}"
        fi
    fi

    # Strategy 2: Fall back to full device name
    if [[ -z "$config_value" ]]; then
        local safe_name
        safe_name="$(sanitize_device_name "$device_name")"
        local device_key="DEVICE_${safe_name^^}_${param^^}"

        if [[ -n "${!device_key+x}" ]]; then
            config_value="${!device_key}"
        fi
    fi

    # Strategy 3: Return default if no match
    if [[ -z "$config_value" ]]; then
        config_value="$default_value"
    fi

    echo "$config_value"
}

detect_audio_devices() {
    local devices=()
    local retry_count=0
    local max_retries=3

    while [[ $retry_count -lt $max_retries ]]; do
        devices=()

        if [[ -d /dev/snd/by-id ]]; then
            for device in /dev/snd/by-id/*; do
                if [[ -L "$device" ]] && [[ "$device" != *"-event-"* ]]; then
                    local device_name
                    device_name="$(basename "$device")"

                    local target
                    target="$(readlink -f "$device")"
                    if [[ "$target" =~ controlC([0-9]+) ]]; then
                        local card_num="${BASH_REMATCH[1]}"

                        if [[ -f "/proc/asound/card${card_num}/usbid" ]]; then
                            devices+=("${device_name}:${card_num}")
                        fi
                    fi
                fi
            done
        fi

        # If we found devices or this is our last retry, break
        if [[ ${#devices[@]} -gt 0 ]] || [[ $retry_count -eq $((max_retries - 1)) ]]; then
            break
        fi

        # Wait a bit before retry
        sleep 0.5
        ((retry_count++)) || true
    done

    # Fallback to /proc/asound/cards if no devices found
    if [[ ${#devices[@]} -eq 0 ]] && [[ -f /proc/asound/cards ]]; then
        while IFS= read -r line || [[ -n "$line" ]]; do
            if [[ "$line" =~ ^[[:space:]]*([0-9]+)[[:space:]]+\[([^]]+)\] ]]; then
                local card_num="${BASH_REMATCH[1]}"
                local card_name="${BASH_REMATCH[2]}"
                if [[ -f "/proc/asound/card${card_num}/usbid" ]]; then
                    local safe_name
                    safe_name="$(echo "$card_name" | tr '[:upper:]' '[:lower:]' | tr ' ' '-' | tr -cd 'a-z0-9-')"
                    if [[ -n "$safe_name" ]]; then
                        devices+=("usb-audio-${safe_name}:${card_num}")
                    fi
                fi
            fi
        done </proc/asound/cards
    fi

    if [[ ${#devices[@]} -gt 0 ]]; then
        printf '%s\n' "${devices[@]}"
    fi
}

generate_stream_path() {
    local device_name="$1"
    local card_num="${2:-}"
    local base_path=""

    if [[ -n "$card_num" ]] && [[ -f "/proc/asound/cards" ]]; then
        local card_info
        card_info=$(grep -E "^ *${card_num} " /proc/asound/cards 2>/dev/null || true)

        if [[ -n "$card_info" ]]; then
            if [[ "$card_info" =~ \[([^]]+)\] ]]; then
                local card_name="${BASH_REMATCH[1]}"
                card_name="$(echo "$card_name" | xargs)"

                if [[ "$card_name" =~ ^[a-z][a-z0-9_-]{0,31}$ ]]; then
                    base_path="$card_name"
                fi
            fi
        fi
    fi

    if [[ -z "$base_path" ]]; then
        base_path="$(sanitize_path_name "$device_name")"
    fi

    if [[ ! "$base_path" =~ ^[a-zA-Z][a-zA-Z0-9_-]*$ ]]; then
        base_path="stream_${base_path}"
    fi

    if [[ ${#base_path} -gt 64 ]]; then
        base_path="${base_path:0:64}"
    fi

    echo "$base_path"
}
