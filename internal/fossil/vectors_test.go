package fossil

import (
	"encoding/json"
	"flag"
	"os"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the SDK's delta vectors")

// vectorsFile holds deltas made by Create, which the TypeScript SDK's
// unit tests apply: the two sides agree on the format.
const vectorsFile = "../../sdk/js/test/unit/fossil-vectors.json"

type vector struct {
	Src    string `json:"src"`
	Target string `json:"target"`
	Delta  string `json:"delta"`
}

func vectorInputs() [][2]string {
	return [][2]string{
		{"", ""},
		{"", "insert only"},
		{"abc", ""},
		{string(feed(1, 100)), string(feed(2, 101))},
		{string(feed(3, 100)), string(feed(3, 100))},
		{string(feed(4, 100)), strings.Repeat(`{"z":1}`, 50)},
		{strings.Repeat("価格✓é", 40), "ü" + strings.Repeat("価格✓é", 40) + "!"},
		{"0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdefX"},
		{"0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdefXY"},
		{"0123456789abcdef0123456789abcdef", "0123456789abcdef0123456789abcdefXYZ"},
	}
}

// TestVectors checks that Create still makes the deltas the SDK's tests
// apply (go test -run TestVectors -update rewrites them).
func TestVectors(t *testing.T) {
	var vs []vector
	for _, in := range vectorInputs() {
		d := Create([]byte(in[0]), []byte(in[1]))
		vs = append(vs, vector{Src: in[0], Target: in[1], Delta: string(d)})
	}
	if *update {
		b, _ := json.MarshalIndent(vs, "", "  ")
		if err := os.WriteFile(vectorsFile, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b, err := os.ReadFile(vectorsFile)
	if err != nil {
		t.Fatal(err)
	}
	var have []vector
	if err := json.Unmarshal(b, &have); err != nil {
		t.Fatal(err)
	}
	if len(have) != len(vs) {
		t.Fatalf("%s holds %d vectors, want %d: run with -update", vectorsFile, len(have), len(vs))
	}
	for i := range vs {
		if have[i] != vs[i] {
			t.Errorf("vector %d differs from what Create makes: run with -update", i)
		}
	}
}
