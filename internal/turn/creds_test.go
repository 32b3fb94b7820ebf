package turn

import (
	"strings"
	"testing"
	"time"
)

func TestParseUsername(t *testing.T) {
	cases := []struct {
		in      string
		expires int64
		user    string
		ok      bool
	}{
		{"1700000000:alice", 1700000000, "alice", true},
		{"0:bob", 0, "bob", true},
		{"1700000000:user:with:colons", 1700000000, "user:with:colons", true},
		{"1700000000:Zoë", 1700000000, "Zoë", true},
		{"alice", 0, "", false},
		{":alice", 0, "", false},
		{"1700000000:", 0, "", false},
		{"-1:alice", 0, "", false},
		{"+1:alice", 0, "", false},
		{"1e9:alice", 0, "", false},
		{"99999999999999999999:alice", 0, "", false},
		{"1700000000:al\nice", 0, "", false},
		{"1700000000:\xff", 0, "", false},
		{"1700000000:" + strings.Repeat("a", MaxUserLen+1), 0, "", false},
	}
	for _, tc := range cases {
		exp, user, err := ParseUsername(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && (exp.Unix() != tc.expires || user != tc.user) {
			t.Errorf("%q: %d %q, want %d %q", tc.in, exp.Unix(), user, tc.expires, tc.user)
		}
	}
}

func TestMintCredential(t *testing.T) {
	exp := time.Unix(1700000000, 0)
	c, err := MintCredential([]byte("secret"), "alice", exp.Add(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if c.Username != "1700000000:alice" || !c.Expires.Equal(exp) {
		t.Errorf("got %+v", c)
	}
	// The REST convention: base64(HMAC-SHA1(secret, username)), here
	// computed once by hand with openssl:
	//   printf '1700000000:alice' | openssl dgst -sha1 -hmac secret -binary | base64
	if c.Password != "d8soP47RbdIKLDUOpnJPVQyq5Ts=" {
		t.Errorf("password %q", c.Password)
	}
	if c2, _ := MintCredential([]byte("other"), "alice", exp); c2.Password == c.Password {
		t.Error("the password does not depend on the secret")
	}
	for _, bad := range []string{"", "a\x00b", strings.Repeat("x", MaxUserLen+1)} {
		if _, err := MintCredential([]byte("secret"), bad, exp); err == nil {
			t.Errorf("user %q minted", bad)
		}
	}
}

func FuzzParseUsername(f *testing.F) {
	for _, s := range []string{"1700000000:alice", "0:a:b", ":", "1:", "abc", "9223372036854775807:x", "1700000000:Zoë"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		exp, user, err := ParseUsername(s)
		if err != nil {
			return
		}
		// What parses mints back to the same expiry and user, and to the
		// same username unless the expiry had leading zeros.
		c, err := MintCredential([]byte("k"), user, exp)
		if err != nil {
			t.Fatalf("%q parsed to user %q, which Mint refuses: %v", s, user, err)
		}
		exp2, user2, err := ParseUsername(c.Username)
		if err != nil || !exp2.Equal(exp) || user2 != user {
			t.Fatalf("%q minted back as %q", s, c.Username)
		}
		if !strings.HasPrefix(s, "0") && c.Username != s {
			t.Fatalf("%q minted back as %q", s, c.Username)
		}
	})
}
