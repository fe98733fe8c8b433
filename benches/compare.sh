#!/bin/bash
# compare.sh: ours vs runit vs supervisord vs s6 supervising the same fake ffmpeg (progress every
# 0.5 s) for N = 1, 8, 64, 256 (issue 10). Not part of CI: it installs Debian packages and
# runs for ~15–25 minutes. It reports; it never fails on a figure (TESTING.md §5).
#
#   benches/compare.sh                       # everything, results in benches/results/
#   benches/compare.sh --ns 8 --steady 10    # any compare.py option (--help)
#
# Needs root for apt-get (only when runit/supervisor/s6 are missing). Builds the release
# binary. Writes benches/results/compare-<UTC date>.json and prints Markdown tables
# (python3 benches/compare.py --render <json> prints them again).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

need=()
command -v runsvdir >/dev/null || need+=(runit)
command -v supervisord >/dev/null || need+=(supervisor)
command -v s6-svscan >/dev/null || need+=(s6)
if ((${#need[@]})); then
    echo "installing ${need[*]} (their services are not started: the benchmark runs its own)" >&2
    # A system-wide supervisord the package may start is left alone: the benchmark runs
    # its own instances with their own configs and sockets.
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2
fi
cargo build --release >&2
mkdir -p benches/results
out=benches/results/compare-$(date -u +%Y%m%dT%H%MZ).json
echo "machine: nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2
python3 benches/compare.py --out "$out" "$@"
echo "results: $out" >&2
python3 benches/compare.py --render "$out"
