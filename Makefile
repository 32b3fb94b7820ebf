# Thin wrappers over the commands the README and CI use.
.PHONY: run build test test-go test-sdk test-e2e fuzz

# Run a server with the demo on http://127.0.0.1:8000 (in-memory broker).
run:
	go run ./cmd/switchboard serve

build:
	go build -o bin/switchboard ./cmd/switchboard

# The README's test command: vet, the Go suite with the race detector
# (fuzz seed corpora included), the SDK's unit tests and bundle check, then
# the browser tests.
test: test-go test-sdk test-e2e

test-go:
	go vet ./...
	go test -race ./...

# The TypeScript SDK: type check, unit tests, and a check that the bundles
# the server embeds (web/sdk/switchboard.js and switchboard-worker.js) are
# a fresh build of sdk/js.
test-sdk:
	cd sdk/js && npm ci --no-audit --no-fund && npm run typecheck && npm run check-bundle && npm test
	cd web && npm ci --no-audit --no-fund && npm run check-vendor

test-e2e:
	cd e2e && npm ci --no-audit --no-fund && npm test

# A short run of every fuzzer (CI runs it too).
FUZZTIME ?= 15s
fuzz:
	go test -run '^$$' -fuzz '^FuzzDecodeCommand$$' -fuzztime $(FUZZTIME) ./internal/protocol/
	go test -run '^$$' -fuzz '^FuzzProcess$$' -fuzztime $(FUZZTIME) ./internal/transport/websocket/
	go test -run '^$$' -fuzz '^FuzzParseRequest$$' -fuzztime $(FUZZTIME) ./internal/transport/sse/
	go test -run '^$$' -fuzz '^FuzzParseRequest$$' -fuzztime $(FUZZTIME) ./internal/transport/longpoll/
	go test -run '^$$' -fuzz '^FuzzFeed$$' -fuzztime $(FUZZTIME) ./internal/transport/websocket/
	go test -run '^$$' -fuzz '^FuzzDecodeCursor$$' -fuzztime $(FUZZTIME) ./internal/protocol/
	go test -run '^$$' -fuzz '^FuzzParseSince$$' -fuzztime $(FUZZTIME) ./internal/protocol/
	go test -run '^$$' -fuzz '^FuzzParseRequest$$' -fuzztime $(FUZZTIME) ./internal/transport/httpread/
	go test -run '^$$' -fuzz '^FuzzDecodeFastAgrees$$' -fuzztime $(FUZZTIME) ./internal/protocol/
	go test -run '^$$' -fuzz '^FuzzConnectToken$$' -fuzztime $(FUZZTIME) ./internal/auth/
	go test -run '^$$' -fuzz '^FuzzRoundTrip$$' -fuzztime $(FUZZTIME) ./internal/fossil/
	go test -run '^$$' -fuzz '^FuzzAppendString$$' -fuzztime $(FUZZTIME) ./internal/protocol/
	go test -run '^$$' -fuzz '^FuzzChannelRules$$' -fuzztime $(FUZZTIME) ./internal/auth/
	go test -run '^$$' -fuzz '^FuzzClientAddr$$' -fuzztime $(FUZZTIME) ./internal/realip/
	go test -run '^$$' -fuzz '^FuzzHosts$$' -fuzztime $(FUZZTIME) ./internal/origin/
	go test -run '^$$' -fuzz '^FuzzUTF8Prefix$$' -fuzztime $(FUZZTIME) ./internal/transport/websocket/
	go test -run '^$$' -fuzz '^FuzzParseClose$$' -fuzztime $(FUZZTIME) ./internal/transport/websocket/
	go test -run '^$$' -fuzz '^FuzzInflate$$' -fuzztime $(FUZZTIME) ./internal/transport/websocket/
	go test -run '^$$' -fuzz '^FuzzStreamInput$$' -fuzztime $(FUZZTIME) ./cmd/switchboard-bench/
	go test -run '^$$' -fuzz '^FuzzAnswer$$' -fuzztime $(FUZZTIME) ./internal/proxy/
	go test -run '^$$' -fuzz '^FuzzParseVP8$$' -fuzztime $(FUZZTIME) ./internal/webrtc/payload/
	go test -run '^$$' -fuzz '^FuzzParseSignal$$' -fuzztime $(FUZZTIME) ./internal/webrtc/signal/
	go test -run '^$$' -fuzz '^FuzzParseRoomData$$' -fuzztime $(FUZZTIME) ./internal/hub/
	go test -run '^$$' -fuzz '^FuzzDecodeBinaryCommand$$' -fuzztime $(FUZZTIME) ./internal/protocol/pb/
	go test -run '^$$' -fuzz '^FuzzAppendReply$$' -fuzztime $(FUZZTIME) ./internal/protocol/pb/
	go test -run '^$$' -fuzz '^FuzzDecodeFact$$' -fuzztime $(FUZZTIME) ./internal/webhook/
	go test -run '^$$' -fuzz '^FuzzDecodeChannel$$' -fuzztime $(FUZZTIME) ./internal/webhook/
	go test -run '^$$' -fuzz '^FuzzDecodeConn$$' -fuzztime $(FUZZTIME) ./internal/webhook/
	go test -run '^$$' -fuzz '^FuzzVerify$$' -fuzztime $(FUZZTIME) ./internal/webhook/
	go test -run '^$$' -fuzz '^FuzzStreamKey$$' -fuzztime $(FUZZTIME) ./internal/stream/
	go test -run '^$$' -fuzz '^FuzzSplitPath$$' -fuzztime $(FUZZTIME) ./internal/stream/
	go test -run '^$$' -fuzz '^FuzzH264AccessUnit$$' -fuzztime $(FUZZTIME) ./internal/stream/rtmp/
	go test -run '^$$' -fuzz '^FuzzParseOffer$$' -fuzztime $(FUZZTIME) ./internal/stream/whip/
	go test -run '^$$' -fuzz '^FuzzSplitAnnexB$$' -fuzztime $(FUZZTIME) ./internal/stream/whip/
	go test -run '^$$' -fuzz '^FuzzStreamRoute$$' -fuzztime $(FUZZTIME) ./internal/server/
	go test -run '^$$' -fuzz '^FuzzCheck$$' -fuzztime $(FUZZTIME) ./internal/consumer/
	go test -run '^$$' -fuzz '^FuzzRecord$$' -fuzztime $(FUZZTIME) ./internal/consumer/kafka/
	go test -run '^$$' -fuzz '^FuzzCheckTable$$' -fuzztime $(FUZZTIME) ./internal/consumer/postgres/

# A short load test of every scenario against Switchboard and the Node.js
# baseline (about two minutes; see docs/performance.md for the full runs).
.PHONY: bench
bench:
	bash bench/short.sh
