#!/bin/bash
# soak.sh: the chaos mix (tests/chaos.rs) at a gentle rate for hours against the release
# build, sampling the supervisor's RSS, FDs, threads and CPU every minute into a CSV, then
# plotting it (benches/soak_plot.sh -> docs/soak.png). Not part of CI.
#
#   benches/soak.sh [MINUTES=60]            # CHAOS_SEED=<n> replays a seed
#
# 16 streams of the fake ffmpeg (progress every 0.5 s), a fault every 2–6 s into a random
# child (SIGKILL, SIGSTOP left stopped, SIGSTOP+SIGCONT, hang, crash-loop episode), and
# every 10 minutes two devices unplugged/replugged plus a SIGHUP reload with one device's
# bitrate changed. At the end the chaos test's checks run (restart accounting exact, no
# orphans or zombies, threads and FDs back to the start, RSS within the band).
# CSV: benches/results/soak-<UTC date>.csv (elapsed_s,rss_kib,fds,threads,cpu_pct,faults,restarts)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
minutes=${1:-60}
cargo build --release >&2
cargo test --no-run --test chaos >&2
mkdir -p benches/results
csv=$here/benches/results/soak-$(date -u +%Y%m%dT%H%MZ).csv
echo "soak: $minutes min, CSV $csv" >&2
# A private copy: rebuilding the tree meanwhile must not swap the binary under the soak.
bin=$(mktemp /tmp/msm-soak-bin.XXXXXX)
cp target/release/mediamtx-stream-manager "$bin"
chmod 755 "$bin"
trap 'rm -f "$bin"' EXIT
echo "soak: binary of $(git rev-parse --short HEAD)$(git diff --quiet -- src || echo +changes)" >&2
status=0
SOAK_MINUTES=$minutes SOAK_CSV=$csv MSM_TEST_BIN=$bin \
    cargo test --test chaos soak -- --ignored --nocapture || status=$?
benches/soak_plot.sh "$csv" docs/soak.png || true
exit $status
