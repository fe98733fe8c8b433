#!/usr/bin/env bash
# Re-create lyrebird_functions.sh from the upstream script, verbatim (no retyping):
#
#   git clone https://github.com/tomtom215/LyreBirdAudio && cd LyreBirdAudio
#   git show 8d1a70994a4f89cdd6b47d9cdf15b00878ce75cd:lyrebird-stream-manager.sh > /tmp/sm.sh
#   tests/bash_upstream/extract.sh /tmp/sm.sh 8d1a70994a4f89cdd6b47d9cdf15b00878ce75cd \
#       > tests/bash_upstream/lyrebird_functions.sh
#
# Copies, byte for byte, the `readonly` lines of the constants the functions read and each
# named function from its `name() {` line to the first line that is exactly `}`.
set -euo pipefail
src="$1"
commit="$2"
functions=(load_device_config sanitize_device_name sanitize_path_name get_device_config
  detect_audio_devices generate_stream_path)
constants='^readonly (DEFAULT_SAMPLE_RATE|DEFAULT_CHANNELS|DEFAULT_CODEC|DEFAULT_BITRATE|DEFAULT_THREAD_QUEUE|MAX_STREAM_NAME_LENGTH|MIN_STREAM_NAME_LENGTH|RESERVED_STREAM_NAMES)='

cat <<HEADER
# Vendored from https://github.com/tomtom215/LyreBirdAudio
#   file:   lyrebird-stream-manager.sh (VERSION="1.5.0")
#   commit: ${commit}
# Copyright the LyreBirdAudio authors. Licensed under the Apache License, Version 2.0
# (see LICENSE in this directory, copied from the same commit). Extracted verbatim by
# tests/bash_upstream/extract.sh: only the constants and functions below, unmodified.
# Used only by tests/differential.rs, through tests/bash_upstream/harness.sh.

HEADER
grep -E "$constants" "$src"
for f in "${functions[@]}"; do
  echo
  awk -v f="$f" '
    $0 ~ "^" f "\\(\\) \\{$" { on = 1 }
    on { print }
    on && $0 == "}" { exit }
  ' "$src"
done
