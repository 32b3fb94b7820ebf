#!/usr/bin/env bash
# The short benchmark behind "make bench": every scenario against Switchboard
# and the Node.js baseline, small and bounded (about two minutes in all;
# the stream scenario is Switchboard's only, and runs LL-HLS readers when
# ffmpeg is installed).
# Results go to bin/bench/: results.jsonl (one JSON line per scenario) and
# broadcast.svg (latency against delivery rate). Extra flags for every run
# can be given in BENCH_FLAGS (default: pin the server to CPU 0 and the tool
# to CPU 1 when the machine has two CPUs or more).
set -euo pipefail
cd "$(dirname "$0")/.."

out=bin/bench
mkdir -p "$out"
go build -o bin/switchboard ./cmd/switchboard
go build -o bin/switchboard-bench ./cmd/switchboard-bench
(cd bench/baseline && npm ci --no-audit --no-fund --silent)

if [ -z "${BENCH_FLAGS+x}" ]; then
	BENCH_FLAGS=""
	if [ "$(nproc)" -ge 2 ] && command -v taskset >/dev/null; then
		BENCH_FLAGS="--pin"
	fi
fi
# shellcheck disable=SC2206
flags=(--target both --server-bin bin/switchboard --json-out "$out/results.jsonl" $BENCH_FLAGS)
: >"$out/results.jsonl"

bench=bin/switchboard-bench
$bench idle "${flags[@]}" --conns 2000 --hold 5s
$bench broadcast "${flags[@]}" --conns 1000 --find-max --rate 50 --rate-factor 1.5 \
	--duration 2s --warmup 1s --max-steps 6 --drain 3s --svg "$out/broadcast.svg"
$bench channels "${flags[@]}" --conns 1000 --via ws --rate 5000 --duration 3s --warmup 1s
$bench sse "${flags[@]}" --conns 1000 --rate 50 --duration 2s --warmup 1s
$bench reconnect "${flags[@]}" --conns 1000 --rate 5 --jitter 500ms --recover-timeout 30s
hls=()
if command -v ffmpeg >/dev/null; then
	hls=(--hls-readers 5)
fi
$bench stream "${flags[@]}" --conns 10 --duration 3s --warmup 1s "${hls[@]}"
echo "results: $out/results.jsonl, plot: $out/broadcast.svg"
