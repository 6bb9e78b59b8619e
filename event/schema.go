package event

import _ "embed"

// Schema is the JSON Schema (draft 2020-12) of a whole event, envelope and data, with the $id
// DataSchema: schema/call-event.v1.json. The tests validate events against it
// (internal/eventtest).
//
//go:embed schema/call-event.v1.json
var Schema []byte
