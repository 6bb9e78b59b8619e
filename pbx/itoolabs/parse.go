package itoolabs

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/pbxbridge/pbxbridge/pbx"
)

// Parse errors; the gateway answers all of them with 400 and RejectionBody.
var (
	ErrEmpty        = errors.New("itoolabs: empty message")
	ErrMalformed    = errors.New("itoolabs: malformed message")
	ErrMissingField = errors.New("itoolabs: missing field")
)

// RejectionBody is the body of the gateway's answer to a message it refuses with status: the
// PBX expects {"error":"Invalid parameters"} with 400 and {"error":"Invalid token"} with 401
// (docs/itoolabs.md, Answers); any other refusal names its status.
func RejectionBody(status int) []byte {
	msg := http.StatusText(status)
	switch status {
	case http.StatusBadRequest:
		msg = "Invalid parameters"
	case http.StatusUnauthorized:
		msg = "Invalid token"
	}
	return pbx.JSON(struct {
		Error string `json:"error"`
	}{cmp.Or(msg, "Error")})
}

// Parse decodes a POSTed message: a form, or a flat JSON object with the same names
// (docs/itoolabs.md, Transport and authentication). Content-Type picks the decoder; for any
// other type a body starting with '{' is JSON, anything else a form.
func Parse(contentType string, body []byte) (Fields, error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, ErrEmpty
	}
	mediaType, _, _ := strings.Cut(contentType, ";")
	mediaType = strings.ToLower(strings.TrimSpace(mediaType))
	if mediaType == "application/json" || mediaType != "application/x-www-form-urlencoded" && body[0] == '{' {
		return checked(decodeJSON(body))
	}
	return checked(decodeForm(string(body)))
}

// ParseQuery decodes a message sent as a GET query string, as cmd=history may be.
func ParseQuery(rawQuery string) (Fields, error) {
	if strings.TrimSpace(rawQuery) == "" {
		return nil, ErrEmpty
	}
	return checked(decodeForm(rawQuery))
}

// checked refuses what no member of the family sends, so that it is never guessed at: text that
// is not UTF-8 (a guessed charset would corrupt names silently, a 400 shows in the PBX's log),
// and a message without cmd.
func checked(f Fields, err error) (Fields, error) {
	if err != nil {
		return nil, err
	}
	for name, value := range f {
		if !utf8.ValidString(name) || !utf8.ValidString(value) {
			return nil, fmt.Errorf("%w: field %.64q is not UTF-8", ErrMalformed, name)
		}
	}
	if f.Command() == "" {
		return nil, fmt.Errorf("%w: cmd", ErrMissingField)
	}
	return f, nil
}

// givenTwice is the error for a repeated name: malformed rather than resolved by a rule the PBX
// never stated (two crm_token fields could otherwise authenticate by one and carry the other).
func givenTwice(name string) error {
	return fmt.Errorf("%w: field %.64q given twice", ErrMalformed, name)
}

func decodeForm(s string) (Fields, error) {
	values, err := url.ParseQuery(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	f := make(Fields, len(values))
	for name, vs := range values {
		if len(vs) > 1 {
			return nil, givenTwice(name)
		}
		f[name] = vs[0]
	}
	return f, nil
}

// decodeJSON reads tokens rather than unmarshalling into a map, which would keep the last of two
// equal names silently and flatten nothing it could refuse.
func decodeJSON(body []byte) (Fields, error) {
	if !utf8.Valid(body) {
		return nil, fmt.Errorf("%w: not UTF-8", ErrMalformed) // encoding/json would substitute U+FFFD
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	bad := func(format string, a ...any) (Fields, error) {
		return nil, fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, a...)...)
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return bad("not a JSON object")
	}
	f := Fields{}
	for dec.More() {
		tok, err := dec.Token()
		name, isName := tok.(string)
		if err != nil || !isName {
			return bad("object key: %v", err)
		}
		if tok, err = dec.Token(); err != nil {
			return bad("%v", err)
		}
		var value string
		switch v := tok.(type) {
		case string:
			value = v
		case json.Number: // the family sends numbers as strings, but a hand-made JSON may not
			value = v.String()
		case bool:
			value = fmt.Sprint(v)
		case nil:
		default:
			return bad("field %.64q is an object or array", name)
		}
		if _, dup := f[name]; dup {
			return nil, givenTwice(name)
		}
		f[name] = value
	}
	if _, err := dec.Token(); err != nil {
		return bad("%v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return bad("data after the JSON object")
	}
	return f, nil
}
