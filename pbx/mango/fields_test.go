package mango

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestText: a JSON string reads as encoding/json decodes it, with or without escapes.
func TestText(t *testing.T) {
	for _, tok := range []string{`""`, `"plain"`, `"Иван"`, `"a\"b\\c\/d\u0026\n"`, `"\u0418"`, "\"bad \xff UTF-8\"", `"emoji 😀"`} {
		var want string
		if err := json.Unmarshal([]byte(tok), &want); err != nil {
			t.Fatal(err)
		}
		if got := text(json.RawMessage(tok)); got != want {
			t.Errorf("text(%s) = %q, want %q", tok, got, want)
		}
	}
	if got := text(json.RawMessage(`12`)); got != "12" {
		t.Errorf("text(12) = %q", got)
	}
}

// FuzzMembers: decodeObject (members) splits an object exactly as json.Unmarshal into a
// map[string]json.RawMessage does.
func FuzzMembers(f *testing.F) {
	for _, s := range []string{
		`{}`, ` { } `, `{"a":1}`, "{\n\t\"a\" :\r\n \"x\" , \"b\":[1, {\"c\":\"]}\"}] ,\"d\":{}}",
		`{"a":"q\"}\\","a":2}`, `{"\u0418мя":null,"e":-1.5e3,"t":true,"f":false,"x":[]}`,
		"{\"bad \xff\":\"v\"}", `{"n":{"m":{"o":[[],[{}]]}},"s":"\\"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var want map[string]json.RawMessage
		if json.Unmarshal(b, &want) != nil || want == nil {
			return // members takes only valid objects (decodeObject's fast path)
		}
		f, err := decodeObject(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		got := f.m
		if len(got) != len(want) {
			t.Fatalf("%s: %d members, want %d", b, len(got), len(want))
		}
		for name, raw := range want {
			if !bytes.Equal(got[name], raw) {
				t.Fatalf("%s: %q is %s, want %s", b, name, got[name], raw)
			}
		}
	})
}
