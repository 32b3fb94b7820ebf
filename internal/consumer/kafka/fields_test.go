package kafka_test

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboardhq/switchboard/internal/consumer"
	"github.com/switchboardhq/switchboard/internal/consumer/kafka"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

func TestFields(t *testing.T) {
	cases := map[string]struct {
		rec          kgo.Record
		channel, key string
	}{
		"key":           {kgo.Record{Topic: "t", Partition: 1, Offset: 7, Key: []byte("news")}, "news", "kafka:t:1:7"},
		"header":        {kgo.Record{Topic: "t", Key: []byte("k"), Headers: []kgo.RecordHeader{{Key: "channel", Value: []byte("news")}}}, "news", "kafka:t:0:0"},
		"idempotency":   {kgo.Record{Key: []byte("news"), Headers: []kgo.RecordHeader{{Key: "idempotency-key", Value: []byte("order-1")}}}, "news", "order-1"},
		"empty key":     {kgo.Record{Topic: "t", Key: []byte("news"), Headers: []kgo.RecordHeader{{Key: "idempotency-key"}}}, "news", "kafka:t:0:0"},
		"last one wins": {kgo.Record{Topic: "t", Headers: []kgo.RecordHeader{{Key: "channel", Value: []byte("a")}, {Key: "channel", Value: []byte("b")}}}, "b", "kafka:t:0:0"},
		"no channel":    {kgo.Record{Topic: "t"}, "", "kafka:t:0:0"},
		"other headers": {kgo.Record{Topic: "t", Key: []byte("news"), Headers: []kgo.RecordHeader{{Key: "Channel", Value: []byte("x")}}}, "news", "kafka:t:0:0"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			ch, key := kafka.Fields(&tc.rec)
			if ch != tc.channel || key != tc.key {
				t.Errorf("Fields = %q, %q; want %q, %q", ch, key, tc.channel, tc.key)
			}
		})
	}
}

// FuzzRecord checks that reading any record never panics, and that a
// record without an idempotency-key header gets a valid derived key when
// its topic is a valid Kafka topic name.
func FuzzRecord(f *testing.F) {
	f.Add("events", int32(3), int64(42), []byte("news"), "channel", []byte("chat:lobby"), []byte(`{"a":1}`))
	f.Add("t", int32(-1), int64(-1), []byte(nil), "idempotency-key", []byte{0xff}, []byte(`{`))
	f.Fuzz(func(t *testing.T, topic string, partition int32, offset int64, key []byte, header string, value, data []byte) {
		r := &kgo.Record{Topic: topic, Partition: partition, Offset: offset, Key: key, Value: data,
			Headers: []kgo.RecordHeader{{Key: header, Value: value}}}
		ch, k := kafka.Fields(r)
		_ = consumer.Check(ch, data, k)
		if header == kafka.KeyHeader && len(value) > 0 || !validTopic(topic) {
			return
		}
		if perr := protocol.ValidateIdempotencyKey(k); perr != nil {
			t.Fatalf("derived key %q: %v", k, perr)
		}
	})
}

// validTopic reports whether s is a valid Kafka topic name.
func validTopic(s string) bool {
	if s == "" || len(s) > 249 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
