package pb

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/switchboardhq/switchboard/internal/protocol"
)

// The benchmarks that chose the binary encoding (docs/performance.md):
// Protobuf written with protowire against MessagePack
// (github.com/vmihailenco/msgpack/v5) and the JSON protocol, on a
// realistic publication push and publish command. Run:
//
//	go test -run '^$' -bench 'Codec' -benchmem ./internal/protocol/pb/
//
// Each reports B/msg, the encoded size.

// feedUpdate is one update of a market-data-like feed: a JSON object of
// which a few fields change from one update to the next.
func feedUpdate(i int) []byte {
	return []byte(`{"sym":"ACME","bid":` + strconv.FormatFloat(101.25+float64(i%50)/100, 'f', 2, 64) +
		`,"ask":` + strconv.FormatFloat(101.30+float64(i%50)/100, 'f', 2, 64) +
		`,"last":101.27,"volume":` + strconv.Itoa(1234567+i) + `,"ts":` + strconv.Itoa(1733370000123+i) +
		`,"venue":"XNAS","status":"open","halted":false}`)
}

const benchChannel = "prices:ACME"

// mpPush and mpCommand are the MessagePack messages, with the data as
// JSON text in a bin field (as the protobuf form carries it).
type mpPush struct {
	Channel string             `msgpack:"c"`
	Offset  uint64             `msgpack:"o"`
	Data    msgpack.RawMessage `msgpack:"d"`
}

type mpCommand struct {
	ID      int64              `msgpack:"i"`
	Command string             `msgpack:"m"`
	Channel string             `msgpack:"c"`
	Data    msgpack.RawMessage `msgpack:"d"`
}

// mpNativePush carries the data as a native MessagePack value, converted
// from the JSON: smaller, and what a "pure" MessagePack protocol would do.
type mpNativePush struct {
	Channel string `msgpack:"c"`
	Offset  uint64 `msgpack:"o"`
	Data    any    `msgpack:"d"`
}

func report(b *testing.B, n int) { b.ReportMetric(float64(n), "B/msg") }

func BenchmarkCodecPushEncode(b *testing.B) {
	data := feedUpdate(7)
	msg := protocol.AppendPublication(nil, benchChannel, data, 123456)
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		var out []byte
		for i := 0; b.Loop(); i++ {
			out = protocol.AppendPublication(out[:0], benchChannel, data, uint64(i))
		}
		report(b, len(msg))
	})
	b.Run("protobuf", func(b *testing.B) {
		// The server's path: transcoding the shared JSON push.
		b.ReportAllocs()
		var out []byte
		for b.Loop() {
			out = AppendReply(out[:0], msg)
		}
		report(b, len(out))
	})
	b.Run("msgpack", func(b *testing.B) {
		b.ReportAllocs()
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		for i := 0; b.Loop(); i++ {
			buf.Reset()
			ch, d, off, _ := splitPublication(msg)
			_ = enc.Encode(&mpPush{Channel: string(ch), Offset: off, Data: d})
		}
		report(b, buf.Len())
	})
	b.Run("msgpack-native", func(b *testing.B) {
		b.ReportAllocs()
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		for b.Loop() {
			buf.Reset()
			ch, d, off, _ := splitPublication(msg)
			var v any
			_ = json.Unmarshal(d, &v)
			_ = enc.Encode(&mpNativePush{Channel: string(ch), Offset: off, Data: v})
		}
		report(b, buf.Len())
	})
}

func BenchmarkCodecPushDecode(b *testing.B) {
	data := feedUpdate(7)
	msg := protocol.AppendPublication(nil, benchChannel, data, 123456)
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var p struct {
				Channel string          `json:"channel"`
				Data    json.RawMessage `json:"data"`
				Offset  uint64          `json:"offset"`
			}
			_ = json.Unmarshal(msg, &p)
		}
	})
	b.Run("protobuf", func(b *testing.B) {
		frame := AppendReply(nil, msg)
		b.ReportAllocs()
		for b.Loop() {
			_, _ = DecodeReply(frame)
		}
	})
	b.Run("msgpack", func(b *testing.B) {
		frame, _ := msgpack.Marshal(&mpPush{Channel: benchChannel, Offset: 123456, Data: data})
		b.ReportAllocs()
		for b.Loop() {
			var p mpPush
			_ = msgpack.Unmarshal(frame, &p)
		}
	})
}

func BenchmarkCodecPublishEncode(b *testing.B) {
	cmd := protocol.Command{ID: 42, HasID: true, Command: protocol.CmdPublish, Channel: benchChannel, Data: feedUpdate(7)}
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		var n int
		for b.Loop() {
			out, _ := json.Marshal(struct {
				ID      int64           `json:"id"`
				Command string          `json:"command"`
				Channel string          `json:"channel"`
				Data    json.RawMessage `json:"data"`
			}{cmd.ID, cmd.Command, cmd.Channel, cmd.Data})
			n = len(out)
		}
		report(b, n)
	})
	b.Run("protobuf", func(b *testing.B) {
		b.ReportAllocs()
		var out []byte
		for b.Loop() {
			out = AppendCommand(out[:0], &cmd)
		}
		report(b, len(out))
	})
	b.Run("msgpack", func(b *testing.B) {
		b.ReportAllocs()
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		for b.Loop() {
			buf.Reset()
			_ = enc.Encode(&mpCommand{ID: cmd.ID, Command: cmd.Command, Channel: cmd.Channel, Data: msgpack.RawMessage(cmd.Data)})
		}
		report(b, buf.Len())
	})
}

func BenchmarkCodecPublishDecode(b *testing.B) {
	cmd := protocol.Command{ID: 42, HasID: true, Command: protocol.CmdPublish, Channel: benchChannel, Data: feedUpdate(7)}
	b.Run("json", func(b *testing.B) {
		frame, _ := json.Marshal(map[string]any{"id": 42, "command": "publish", "channel": benchChannel, "data": json.RawMessage(cmd.Data)})
		b.ReportAllocs()
		for b.Loop() {
			_, _ = protocol.DecodeCommand(frame)
		}
	})
	b.Run("protobuf", func(b *testing.B) {
		frame := AppendCommand(nil, &cmd)
		b.ReportAllocs()
		for b.Loop() {
			_, _ = DecodeCommand(frame)
		}
	})
	b.Run("msgpack", func(b *testing.B) {
		frame, _ := msgpack.Marshal(&mpCommand{ID: cmd.ID, Command: cmd.Command, Channel: cmd.Channel, Data: msgpack.RawMessage(cmd.Data)})
		b.ReportAllocs()
		for b.Loop() {
			var c mpCommand
			_ = msgpack.Unmarshal(frame, &c)
			// What the server needs: the data as JSON, checked.
			_ = json.Valid(c.Data)
		}
	})
}
