package consumer_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/switchboardhq/switchboard/internal/consumer"
	"github.com/switchboardhq/switchboard/internal/protocol"
)

func TestPublish(t *testing.T) {
	errDown := errors.New("broker down")
	cases := map[string]struct {
		channel, data, key string
		answer             error
		dup                bool
		want               consumer.Result
		invalid, failed    bool
	}{
		"published":         {channel: "news", data: `{"a":1}`, key: "k", want: consumer.Published},
		"duplicate":         {channel: "news", data: `1`, key: "k", dup: true, want: consumer.Duplicate},
		"bad channel":       {channel: "a b", data: `1`, key: "k", want: consumer.Invalid, invalid: true},
		"no channel":        {channel: "", data: `1`, key: "k", want: consumer.Invalid, invalid: true},
		"not json":          {channel: "news", data: `{`, key: "k", want: consumer.Invalid, invalid: true},
		"two values":        {channel: "news", data: `1 2`, key: "k", want: consumer.Invalid, invalid: true},
		"no data":           {channel: "news", data: ``, key: "k", want: consumer.Invalid, invalid: true},
		"too large":         {channel: "news", data: `"` + strings.Repeat("x", consumer.MaxDataSize) + `"`, key: "k", want: consumer.Invalid, invalid: true},
		"long key":          {channel: "news", data: `1`, key: strings.Repeat("k", 65), want: consumer.Invalid, invalid: true},
		"refused for good":  {channel: "x:y", data: `1`, key: "k", answer: protocol.ErrInvalidChannel.WithMessage("unknown namespace"), want: consumer.Invalid, invalid: true},
		"unavailable (503)": {channel: "news", data: `1`, key: "k", answer: protocol.ErrUnavailable, failed: true},
		"broker error":      {channel: "news", data: `1`, key: "k", answer: errDown, failed: true},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			publish := func(context.Context, string, []byte, string) (bool, error) { return tc.dup, tc.answer }
			res, err := consumer.Publish(context.Background(), publish, tc.channel, []byte(tc.data), tc.key)
			if res != tc.want {
				t.Errorf("result %q, want %q", res, tc.want)
			}
			if got := errors.Is(err, consumer.ErrInvalid); got != tc.invalid {
				t.Errorf("error %v: invalid %v, want %v", err, got, tc.invalid)
			}
			if tc.failed && (err == nil || res != "") {
				t.Errorf("a temporary failure gave %q, %v", res, err)
			}
		})
	}
}

func TestDerivedKey(t *testing.T) {
	for _, prefix := range []string{"outbox:switchboard_outbox", "kafka:" + strings.Repeat("t", 249)} {
		k := consumer.DerivedKey(prefix, "12:9223372036854775807")
		if perr := protocol.ValidateIdempotencyKey(k); perr != nil {
			t.Errorf("DerivedKey(%q): %q: %v", prefix, k, perr)
		}
	}
	if a, b := consumer.DerivedKey("p", "1"), consumer.DerivedKey("p", "2"); a == b {
		t.Errorf("two ids, one key %q", a)
	}
}

// FuzzCheck checks that Check never panics and accepts only what the
// engine can publish.
func FuzzCheck(f *testing.F) {
	f.Add("news", []byte(`{"a":1}`), "key-1")
	f.Add("chat:lobby", []byte(`"x"`), "")
	f.Add("a b", []byte(`{`), strings.Repeat("k", 65))
	f.Add("", []byte(nil), "\x00")
	f.Fuzz(func(t *testing.T, channel string, data []byte, key string) {
		if consumer.Check(channel, data, key) != nil {
			return
		}
		if protocol.ValidateChannel(channel) != nil || len(data) > consumer.MaxDataSize || !json.Valid(data) || protocol.ValidateIdempotencyKey(key) != nil {
			t.Fatalf("accepted %q %q %q", channel, data, key)
		}
	})
}
