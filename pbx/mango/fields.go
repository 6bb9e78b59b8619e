package mango

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// maxUnix is 9999-12-31T23:59:59Z: a later time cannot be written in RFC 3339.
const maxUnix = 253402300799

// fields reads one JSON object of a payload as leniently as Mango needs (docs/mango.md, Lenient
// fields): integers may come quoted, strings as bare numbers, booleans as strings, an empty object
// as PHP's `[]`. Anything else of the wrong type is an error naming the field. The first error
// sticks and is shared with nested objects, so a translator reads every field it needs and checks
// err() once.
type fields struct {
	m    map[string]json.RawMessage
	path string // prefix of nested field names in errors, e.g. "to."
	err  *error
}

// decodeObject decodes a payload that must be a JSON object (or null).
func decodeObject(b []byte) (fields, error) {
	f := fields{err: new(error)}
	if i := skipSpace(b, 0); i < len(b) && b[i] == '{' && json.Valid(b) {
		f.m = members(b[i:])
		return f, nil
	}
	if err := json.Unmarshal(b, &f.m); err != nil {
		return f, fmt.Errorf("payload is not a JSON object: %w", err)
	}
	return f, nil
}

// members splits obj, a valid JSON object, into its members as json.Unmarshal into a
// map[string]json.RawMessage would (the last of a repeated name wins), but each value is obj's
// own bytes, not a copy, and no reflection is involved: the decode was most of a Mango
// webhook's translation (docs/performance.md).
func members(obj []byte) map[string]json.RawMessage {
	m := make(map[string]json.RawMessage)
	names := string(obj) // plain names are substrings of one copy, not a copy each
	i := 1               // past '{'
	for {
		i = skipSpace(obj, i)
		switch obj[i] {
		case '}':
			return m
		case ',':
			i = skipSpace(obj, i+1)
		}
		end := valueEnd(obj, i)
		name := names[i+1 : end-1]
		if !plain(obj[i+1 : end-1]) {
			name = text(obj[i:end])
		}
		i = skipSpace(obj, skipSpace(obj, end)+1) // past ':'
		end = valueEnd(obj, i)
		m[name] = obj[i:end:end]
		i = end
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// valueEnd is the end of the valid JSON value that starts at b[i].
func valueEnd(b []byte, i int) int {
	switch b[i] {
	case '"':
		for i++; b[i] != '"'; i++ {
			if b[i] == '\\' {
				i++
			}
		}
		return i + 1
	case '{', '[':
		depth := 0
		for ; ; i++ {
			switch b[i] {
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			case '"':
				i = valueEnd(b, i) - 1
			}
		}
	}
	for ; i < len(b); i++ { // a number, true, false or null
		switch b[i] {
		case ',', '}', ']', ' ', '\t', '\r', '\n':
			return i
		}
	}
	return i
}

func (f fields) error() error { return *f.err }

// fresh is f with no error yet: the same payload read again.
func (f fields) fresh() fields { return fields{m: f.m, path: f.path, err: new(error)} }

func (f fields) fail(name, want string, raw json.RawMessage) {
	if *f.err == nil {
		*f.err = fmt.Errorf("%s%s: want %s, got %.40s", f.path, name, want, raw)
	}
}

// get returns the value of the first of names present that is not null.
func (f fields) get(names ...string) (json.RawMessage, string) {
	for _, n := range names {
		if raw, ok := f.m[n]; ok && string(raw) != "null" {
			return raw, n
		}
	}
	return nil, names[0]
}

// has reports whether name carries a value (not absent, null or "").
func (f fields) has(name string) bool {
	raw, _ := f.get(name)
	return raw != nil && string(raw) != `""`
}

// str reads a string; a number is taken as its digits (extension, acd_group, number). With
// several names (a misspelling), the first present wins.
func (f fields) str(names ...string) string {
	raw, name := f.get(names...)
	switch {
	case raw == nil:
		return ""
	case raw[0] == '"' || raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9':
		return text(raw)
	}
	f.fail(name, "a string", raw)
	return ""
}

// text is a JSON string's value, or any other JSON value as written.
func text(raw json.RawMessage) string {
	if raw[0] != '"' {
		return string(raw)
	}
	if body := raw[1 : len(raw)-1]; plain(body) {
		return string(body) // what decoding gives, without the decoder's cost
	}
	var s string
	json.Unmarshal(raw, &s) // cannot fail: a JSON string token
	return s
}

// plain reports whether a JSON string's body reads as itself: no escapes, valid UTF-8.
func plain(body []byte) bool { return bytes.IndexByte(body, '\\') < 0 && utf8.Valid(body) }

// num reads a non-negative integer sent as a number or a quoted number; absent, null and ""
// read as 0, which Mango uses for "did not happen".
func (f fields) num(name string) int64 {
	raw, _ := f.get(name)
	if raw == nil {
		return 0
	}
	s := strings.TrimSpace(text(raw))
	if s == "" {
		return 0
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		f.fail(name, "a non-negative integer", raw)
		return 0
	}
	return n
}

// time reads epoch seconds; 0 (never) is the zero time, never 1970.
func (f fields) time(name string) time.Time {
	n := f.num(name)
	if n == 0 {
		return time.Time{}
	}
	if n > maxUnix {
		raw, _ := f.get(name)
		f.fail(name, "epoch seconds", raw)
		return time.Time{}
	}
	return time.Unix(n, 0).UTC()
}

// flag reads a boolean sent as true/false, "true"/"false", 1/0 or "1"/"0".
func (f fields) flag(names ...string) bool {
	raw, name := f.get(names...)
	if raw == nil {
		return false
	}
	s := strings.TrimSpace(text(raw))
	if s == "" {
		return false
	}
	b, err := strconv.ParseBool(s)
	if err != nil {
		f.fail(name, "a boolean", raw)
	}
	return b
}

// obj reads a nested object; absent, null and [] read as an empty one.
func (f fields) obj(name string) fields {
	sub := fields{path: f.path + name + ".", err: f.err}
	raw, _ := f.get(name)
	if raw == nil {
		return sub
	}
	if raw[0] == '[' && skipSpace(raw, 1) == len(raw)-1 { // []
		return sub
	}
	if raw[0] != '{' {
		f.fail(name, "an object", raw)
		return sub
	}
	sub.m = members(raw) // raw is a member of a valid object
	return sub
}
