package payload

import (
	"bytes"
	"testing"
)

func TestParseVP8(t *testing.T) {
	tests := map[string]struct {
		in   []byte
		want VP8
		err  bool
	}{
		"minimal keyframe":   {in: []byte{0x10, 0x00, 0x9d}, want: VP8{Start: true, Keyframe: true, HeaderSize: 1}},
		"minimal interframe": {in: []byte{0x10, 0x01}, want: VP8{Start: true, HeaderSize: 1}},
		"continuation":       {in: []byte{0x00, 0x00}, want: VP8{HeaderSize: 1}},
		"wide picture id and tl0": {
			in:   []byte{0x90, 0xe0, 0x81, 0x23, 0x07, 0x40, 0x00},
			want: VP8{Start: true, HasPictureID: true, WidePictureID: true, PictureID: 0x123, HasTL0PicIdx: true, TL0PicIdx: 7, HasTID: true, TID: 1, Keyframe: true, HeaderSize: 6},
		},
		"narrow picture id":  {in: []byte{0x90, 0x80, 0x05, 0x01}, want: VP8{Start: true, HasPictureID: true, PictureID: 5, HeaderSize: 3}},
		"key index":          {in: []byte{0x80, 0x10, 0x05, 0x01}, want: VP8{HasKeyIdx: true, KeyIdx: 5, HeaderSize: 3}},
		"empty":              {in: nil, err: true},
		"x without byte":     {in: []byte{0x80}, err: true},
		"i without id":       {in: []byte{0x80, 0x80}, err: true},
		"wide id cut":        {in: []byte{0x80, 0x80, 0x80}, err: true},
		"l without tl0":      {in: []byte{0x80, 0x40}, err: true},
		"t without tid byte": {in: []byte{0x80, 0x20}, err: true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := ParseVP8(tc.in)
			if tc.err {
				if err == nil {
					t.Fatalf("ParseVP8(%x) = %+v, want an error", tc.in, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseVP8(%x): %v", tc.in, err)
			}
			got.picIDAt, got.tl0At = 0, 0
			if got != tc.want {
				t.Fatalf("ParseVP8(%x)\n got %+v\nwant %+v", tc.in, got, tc.want)
			}
		})
	}
}

func TestRewriteVP8(t *testing.T) {
	in := []byte{0x90, 0xc0, 0x81, 0x23, 0x07, 0xaa, 0xbb}
	d, err := ParseVP8(in)
	if err != nil {
		t.Fatal(err)
	}
	out := d.Rewrite(make([]byte, len(in)), in, 0x7ffe, 9)
	back, err := ParseVP8(out)
	if err != nil {
		t.Fatal(err)
	}
	if back.PictureID != 0x7ffe || back.TL0PicIdx != 9 || !bytes.Equal(out[5:], in[5:]) {
		t.Fatalf("rewrite gave %x (%+v)", out, back)
	}
	if in[2] != 0x81 {
		t.Fatal("rewrite changed its input")
	}
}

func TestIsKeyframe(t *testing.T) {
	tests := map[string]struct {
		mime string
		in   []byte
		want bool
	}{
		"vp8 key":          {"video/VP8", []byte{0x10, 0x00}, true},
		"vp8 delta":        {"video/VP8", []byte{0x10, 0x01}, false},
		"vp9 key":          {"video/VP9", []byte{0x08}, true},
		"vp9 inter":        {"video/VP9", []byte{0x48}, false},
		"vp9 key layer 1":  {"video/VP9", []byte{0xa8, 0x01, 0x02}, false},
		"vp9 key layer 0":  {"video/VP9", []byte{0xa8, 0x01, 0x00}, true},
		"h264 idr":         {"video/H264", []byte{0x65}, true},
		"h264 sps in stap": {"video/H264", []byte{0x18, 0x00, 0x02, 0x67, 0x42}, true},
		"h264 fu-a idr":    {"video/H264", []byte{0x7c, 0x85}, true},
		"h264 fu-a middle": {"video/H264", []byte{0x7c, 0x05}, false},
		"h264 slice":       {"video/H264", []byte{0x41}, false},
		"opus":             {"audio/opus", []byte{0x01}, true},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if got := IsKeyframe(tc.mime, tc.in); got != tc.want {
				t.Fatalf("IsKeyframe(%s, %x) = %v, want %v", tc.mime, tc.in, got, tc.want)
			}
		})
	}
}

func FuzzParseVP8(f *testing.F) {
	for _, s := range [][]byte{{0x10, 0x00, 0x9d}, {0x90, 0xe0, 0x81, 0x23, 0x07, 0x40, 0x00}, {0x80, 0x10, 0x25}} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		d, err := ParseVP8(p)
		if err != nil {
			return
		}
		if d.HeaderSize > len(p) {
			t.Fatalf("header size %d over payload %d", d.HeaderSize, len(p))
		}
		out := d.Rewrite(make([]byte, len(p)), p, d.PictureID+1, d.TL0PicIdx+1)
		back, err := ParseVP8(out)
		if err != nil {
			t.Fatalf("rewritten payload does not parse: %v", err)
		}
		if d.HasPictureID && back.PictureID != (d.PictureID+1)&d.PictureIDMask() {
			t.Fatalf("picture id %d after rewrite to %d", back.PictureID, d.PictureID+1)
		}
		for _, m := range []string{"video/VP8", "video/VP9", "video/H264"} {
			IsKeyframe(m, p)
		}
	})
}
