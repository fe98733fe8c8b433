#!/bin/bash
# soak_plot.sh CSV [PNG=docs/soak.png]: the soak CSV as four panels (RSS, FDs, threads,
# CPU) against time. Needs gnuplot (apt-get install -y gnuplot-nox).
set -euo pipefail
csv=$1
png=${2:-docs/soak.png}
command -v gnuplot >/dev/null || { echo "gnuplot missing: apt-get install -y gnuplot-nox" >&2; exit 1; }
mins=$(awk -F, 'NR>1{t=$1} END{printf "%.0f", t/60}' "$csv")
gnuplot <<EOT
set terminal pngcairo size 1000,800 font ",10"
set output "$png"
set datafile separator ","
set key off
set grid
set xlabel "minutes"
set multiplot layout 2,2 title "Supervisor under the chaos mix, 16 streams, ${mins} min (benches/soak.sh)"
set title "RSS (MiB)"
set yrange [0:*]
plot "$csv" every ::1 using (\$1/60):(\$2/1024) with linespoints pt 7 ps 0.4
set title "open file descriptors"
plot "$csv" every ::1 using (\$1/60):3 with linespoints pt 7 ps 0.4
set title "threads"
plot "$csv" every ::1 using (\$1/60):4 with linespoints pt 7 ps 0.4
set title "CPU over the minute (% of one core)"
plot "$csv" every ::1 using (\$1/60):5 with linespoints pt 7 ps 0.4
unset multiplot
EOT
echo "plot: $png" >&2
