#!/usr/bin/env bash
# A/B run of two Switchboard commits in one sitting: the scenarios that a
# change to the engine can move (idle memory, broadcast, channels), each run
# for BASE_REV and then SERVER_REV (default HEAD), REPEAT times, alternating,
# so that both see the same machine. Lines go to
# bench/results/<SERVER_REV>/ab-<scenario>.jsonl with the binary's commit in
# the "server" field. About 15 minutes with REPEAT=2.
set -euo pipefail
cd "$(dirname "$0")/.."

base=$(git rev-parse --short "${BASE_REV:?set BASE_REV to the commit to compare with}")
head=$(git rev-parse --short "${SERVER_REV:-HEAD}")
repeat=${REPEAT:-2}
for rev in "$base" "$head"; do
	src=$(mktemp -d)
	git archive "$rev" | tar -x -C "$src"
	(cd "$src" && go build -o "$OLDPWD/bin/switchboard-$rev" ./cmd/switchboard)
	rm -rf "$src"
done
go build -o bin/switchboard-bench ./cmd/switchboard-bench
r=bench/results/$head
mkdir -p "$r"
bench=bin/switchboard-bench
# shellcheck disable=SC2206
common=(--target switchboard --pin ${BENCH_FLAGS:-})

for i in $(seq "$repeat"); do
	for rev in "$base" "$head"; do
		echo "== round $i: $rev"
		flags=("${common[@]}" --server-bin "bin/switchboard-$rev")
		$bench idle "${flags[@]}" --conns 10000 --hold 10s --json-out "$r/ab-idle.jsonl"
		$bench broadcast "${flags[@]}" --conns 1000 --find-max --rate 200 --rate-factor 1.5 \
			--duration 3s --warmup 1s --max-steps 8 --drain 3s --json-out "$r/ab-broadcast-1000.jsonl"
		$bench channels "${flags[@]}" --conns 10000 --via ws --find-max --rate 7500 --rate-factor 1.25 \
			--duration 3s --warmup 1s --max-steps 6 --json-out "$r/ab-channels-ws.jsonl"
	done
done
echo "results: $r/ab-*.jsonl"
