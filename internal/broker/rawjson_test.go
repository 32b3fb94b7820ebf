package broker_test

import (
	"encoding/json"
	"testing"

	"github.com/switchboardhq/switchboard/internal/broker"
)

// TestClientInfoJSON: presence entries keep their info as it was encoded,
// omit it when empty, and stay comparable.
func TestClientInfoJSON(t *testing.T) {
	for _, tc := range []struct {
		in   broker.ClientInfo
		want string
	}{
		{broker.ClientInfo{Client: "c1"}, `{"client":"c1"}`},
		{broker.ClientInfo{Client: "c1", User: "u", Info: `{"role":"admin"}`}, `{"client":"c1","user":"u","info":{"role":"admin"}}`},
	} {
		b, err := json.Marshal(tc.in)
		if err != nil || string(b) != tc.want {
			t.Fatalf("marshal %+v: %s %v", tc.in, b, err)
		}
		var back broker.ClientInfo
		if err := json.Unmarshal(b, &back); err != nil || back != tc.in {
			t.Fatalf("round trip of %s: %+v %v", b, back, err)
		}
	}
	var null broker.ClientInfo
	if err := json.Unmarshal([]byte(`{"client":"c","info":null}`), &null); err != nil || null.Info != "" {
		t.Fatalf("null info: %+v %v", null, err)
	}
}
