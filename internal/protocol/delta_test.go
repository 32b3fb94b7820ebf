package protocol

import (
	"encoding/json"
	"testing"
)

func TestAppendString(t *testing.T) {
	cases := map[string]string{
		"":                      `""`,
		"plain":                 `"plain"`,
		`{"a":"b\n"}`:           `"{\"a\":\"b\\n\"}"`,
		"tab\tcr\rnl\n":         `"tab\tcr\rnl\n"`,
		"\x00\x1f":              `"\u0000\u001f"`,
		"価格 ✓ <&>":              `"価格 ✓ <&>"`,
		"bad \xff byte":         `"bad \ufffd byte"`,
		"cut \xe4\xbe":          `"cut \ufffd\ufffd"`,
		"\u2028 line separator": "\"\u2028 line separator\"",
	}
	for in, want := range cases {
		got := string(AppendString(nil, []byte(in)))
		if got != want {
			t.Errorf("AppendString(%q) = %s, want %s", in, got, want)
		}
		var back string
		if err := json.Unmarshal([]byte(got), &back); err != nil {
			t.Errorf("AppendString(%q) = %s: not JSON: %v", in, got, err)
		}
	}
}

func TestAppendPublicationString(t *testing.T) {
	cases := []struct {
		name  string
		data  string
		delta bool
		want  string
	}{
		{"full", `{"a":1}`, false, `{"channel":"c","data":"{\"a\":1}","offset":7}`},
		{"delta", "5\n3@0,2:}x;", true, `{"channel":"c","data":"5\n3@0,2:}x;","offset":7,"delta":true}`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := string(AppendPublicationString(nil, "c", []byte(c.data), 7, c.delta))
			if got != c.want {
				t.Fatalf("got %s, want %s", got, c.want)
			}
			var v struct {
				Data string `json:"data"`
			}
			if err := json.Unmarshal([]byte(got), &v); err != nil || v.Data != c.data {
				t.Fatalf("data decodes to %q, %v; want %q", v.Data, err, c.data)
			}
		})
	}
}

func TestValidateDelta(t *testing.T) {
	for in, ok := range map[string]bool{"": true, "fossil": true, "Fossil": false, "xdelta": false} {
		if got := ValidateDelta(in) == nil; got != ok {
			t.Errorf("ValidateDelta(%q) ok = %v, want %v", in, got, ok)
		}
	}
}

// FuzzAppendString checks that AppendString makes a JSON string that
// decodes to its input whenever the input is valid UTF-8.
func FuzzAppendString(f *testing.F) {
	f.Add([]byte(`{"a":"b\n"}`))
	f.Add([]byte("価格\x00\xff"))
	f.Fuzz(func(t *testing.T, in []byte) {
		out := AppendString(nil, in)
		var back string
		if err := json.Unmarshal(out, &back); err != nil {
			t.Fatalf("%q: not JSON: %v", out, err)
		}
		if want := string([]rune(string(in))); back != want {
			t.Fatalf("%q decodes to %q, want %q", out, back, want)
		}
	})
}
