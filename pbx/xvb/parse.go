package xvb

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// Parse errors; the handler answers all of them with 400.
var (
	ErrEmpty        = errors.New("xvb: empty body")
	ErrMalformed    = errors.New("xvb: malformed body")
	ErrMissingField = errors.New("xvb: missing field")
)

// Parse decodes one XVB message: a form post or the JSON data format (a flat object with the same
// keys). The decoder is chosen by Content-Type; for any other type a body starting with '{' is
// taken as JSON, anything else as a form. Duplicate keys: the first wins. recoded reports that
// text was not valid UTF-8 and was decoded as CP1251 (legacy Russian systems), for the log.
func Parse(contentType string, body []byte) (f Fields, recoded bool, err error) {
	body = bytes.TrimSpace(body)
	if len(body) == 0 {
		return nil, false, ErrEmpty
	}
	mediaType, _, _ := strings.Cut(contentType, ";")
	switch mediaType = strings.ToLower(strings.TrimSpace(mediaType)); {
	case mediaType == "application/json",
		mediaType != "application/x-www-form-urlencoded" && body[0] == '{':
		f, recoded, err = parseJSON(body)
	default:
		f, recoded, err = parseForm(string(body))
	}
	if err != nil {
		return nil, false, err
	}
	for _, name := range []string{"cmd", "access_code"} {
		if f[name] == "" {
			return nil, false, fmt.Errorf("%w: %s", ErrMissingField, name)
		}
	}
	return f, recoded, nil
}

// parseForm splits by hand rather than with url.ParseQuery, which rejects a ';' that an
// unencoded recording link (…?media=mp3;type=listen) could carry.
func parseForm(body string) (Fields, bool, error) {
	f := Fields{}
	recoded := false
	for pair := range strings.SplitSeq(body, "&") {
		if pair == "" {
			continue
		}
		rawName, rawValue, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil {
			return nil, false, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return nil, false, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		name, r1 := utf8OrCP1251(name)
		value, r2 := utf8OrCP1251(value)
		recoded = recoded || r1 || r2
		if _, dup := f[name]; !dup {
			f[name] = value
		}
	}
	return f, recoded, nil
}

// parseJSON walks tokens instead of unmarshalling into a map, to keep the first of duplicate keys
// and to refuse nested values rather than flatten them in some invented way.
func parseJSON(body []byte) (Fields, bool, error) {
	// encoding/json would silently turn invalid UTF-8 into U+FFFD; JSON's syntax is ASCII, which
	// CP1251 leaves alone, so the whole body can be recoded before decoding.
	text, recoded := utf8OrCP1251(string(body))
	dec := json.NewDecoder(strings.NewReader(text))
	dec.UseNumber()
	malformed := func(err error) (Fields, bool, error) {
		return nil, false, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return malformed(fmt.Errorf("not a JSON object (%v)", err))
	}
	f := Fields{}
	for dec.More() {
		tok, err := dec.Token()
		name, isKey := tok.(string)
		if err != nil || !isKey {
			return malformed(fmt.Errorf("object key: %v", err))
		}
		if tok, err = dec.Token(); err != nil {
			return malformed(err)
		}
		var value string
		switch v := tok.(type) {
		case string:
			value = v
		case json.Number:
			value = v.String()
		case bool:
			value = strconv.FormatBool(v)
		case nil:
			// null: present but empty, like XVB's empty ext.
		default:
			return malformed(fmt.Errorf("field %.64q is not a string, number or bool", name))
		}
		if _, dup := f[name]; !dup {
			f[name] = value
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		return malformed(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return malformed(errors.New("data after the JSON object"))
	}
	return f, recoded, nil
}

// utf8OrCP1251 returns s unchanged when it is valid UTF-8, else s decoded as CP1251 (a total
// mapping, so it cannot fail) and true.
func utf8OrCP1251(s string) (string, bool) {
	if utf8.ValidString(s) {
		return s, false
	}
	out, _ := charmap.Windows1251.NewDecoder().String(s)
	return out, true
}
