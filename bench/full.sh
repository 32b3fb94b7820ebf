#!/usr/bin/env bash
# The full-size runs behind bench/RESULTS.md: each scenario at the sizes of
# the performance targets, against Switchboard and the Node.js baseline, the
# server pinned to CPU 0 and the tool to CPU 1. About 20-40 minutes,
# depending on how long it waits for a quiet machine. Each scenario appends
# one JSON line per run to bench/results/<commit>/<name>.jsonl. Extra flags
# for every run can be given in BENCH_FLAGS. The server is built from a clean
# export of the commit SERVER_REV (default HEAD), so that edits in the work
# tree do not leak into the figures.
set -euo pipefail
cd "$(dirname "$0")/.."

rev=$(git rev-parse --short "${SERVER_REV:-HEAD}")
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
git archive "$rev" | tar -x -C "$src"
(cd "$src" && go build -o "$OLDPWD/bin/switchboard-$rev" ./cmd/switchboard)
go build -o bin/switchboard-bench ./cmd/switchboard-bench
echo "server: bin/switchboard-$rev (commit $rev)"
(cd bench/baseline && npm ci --no-audit --no-fund --silent)

# shellcheck disable=SC2206
flags=(--target both --server-bin "bin/switchboard-$rev" --pin --wait-quiet 120s --quiet-pct 15
	--retries 2 ${BENCH_FLAGS:-})
bench=bin/switchboard-bench
r=bench/results/$rev
mkdir -p "$r"

for n in 1000 10000 19000; do
	$bench idle "${flags[@]}" --conns "$n" --hold 10s --json-out $r/idle.jsonl
done
$bench broadcast "${flags[@]}" --conns 1000 --find-max --rate 100 --rate-factor 1.25 \
	--duration 5s --json-out $r/broadcast-1000.jsonl --svg $r/broadcast-1000.svg
$bench broadcast "${flags[@]}" --conns 10000 --rate 1 --duration 30s --max-p99 50ms \
	--json-out $r/broadcast-10000.jsonl
$bench channels "${flags[@]}" --conns 10000 --via ws --find-max --rate 7500 --rate-factor 1.25 \
	--duration 5s --json-out $r/channels-ws.jsonl
$bench channels "${flags[@]}" --conns 10000 --via api --find-max --rate 2000 --rate-factor 1.5 \
	--duration 5s --json-out $r/channels-api.jsonl
# 100 publications per /api/batch request (the baseline has no batch call:
# it gets one request per publication)
$bench channels "${flags[@]}" --conns 10000 --via api --batch 100 --publishers 4 --find-max \
	--rate 10000 --rate-factor 1.25 --duration 5s --json-out $r/channels-api-batch.jsonl
$bench sse "${flags[@]}" --conns 1000 --find-max --rate 50 --rate-factor 1.25 \
	--duration 5s --json-out $r/sse-1000.jsonl --svg $r/sse-1000.svg
$bench reconnect "${flags[@]}" --conns 10000 --rate 1 --jitter 1s --json-out $r/reconnect.jsonl
$bench reconnect "${flags[@]}" --target switchboard --conns 10000 --rate 1 --jitter 1s --drop restart \
	--json-out $r/reconnect.jsonl
