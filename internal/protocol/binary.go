package protocol

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
)

// Binary data in a JSON world. Publications are stored and fanned out as
// JSON values; bytes published by a client of the binary protocol travel
// as the JSON object {"$binary":"<standard base64, padded>"}. A JSON
// client sees that object as the publication's data (and may publish it
// itself); a binary client gets the decoded bytes, flagged as binary.

// binaryPrefix and binarySuffix frame the compact form of binary data.
const (
	binaryPrefix = `{"$binary":"`
	binarySuffix = `"}`
)

// AppendBinaryData appends the JSON form of the binary data b:
// {"$binary":"<base64>"}.
func AppendBinaryData(dst, b []byte) []byte {
	dst = append(dst, binaryPrefix...)
	dst = base64.StdEncoding.AppendEncode(dst, b)
	return append(dst, binarySuffix...)
}

// BinaryData returns the JSON form of the binary data b (see
// AppendBinaryData).
func BinaryData(b []byte) json.RawMessage {
	return AppendBinaryData(make([]byte, 0, len(binaryPrefix)+base64.StdEncoding.EncodedLen(len(b))+len(binarySuffix)), b)
}

// AppendDecodedBinary reports whether data, a valid JSON value, is the
// JSON form of binary data, and if so appends the decoded bytes to dst.
// The form is an object with the single member "$binary" whose value is a
// string of padded standard base64 (canonical: unused bits zero, no line
// breaks); whitespace around the tokens is allowed, escapes in the string
// are not. When data is anything else, dst is returned unchanged.
func AppendDecodedBinary(dst, data []byte) ([]byte, bool) {
	if len(data) < len(binaryPrefix)+len(binarySuffix) || data[0] != '{' {
		return dst, false
	}
	var b64 []byte
	if bytes.HasPrefix(data, []byte(binaryPrefix)) && bytes.HasSuffix(data, []byte(binarySuffix)) {
		b64 = data[len(binaryPrefix) : len(data)-len(binarySuffix)]
	} else {
		if !bytes.Contains(data, []byte(`"$binary"`)) {
			return dst, false
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(data, &m) != nil || len(m) != 1 {
			return dst, false
		}
		v, found := m["$binary"]
		if !found || len(v) < 2 || v[0] != '"' {
			return dst, false
		}
		b64 = v[1 : len(v)-1]
	}
	if len(b64)%4 != 0 || bytes.ContainsAny(b64, "\\\r\n") {
		return dst, false
	}
	out, err := base64.StdEncoding.Strict().AppendDecode(dst, b64)
	if err != nil {
		return dst, false
	}
	return out, true
}
