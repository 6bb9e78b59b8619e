package mango

import (
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
