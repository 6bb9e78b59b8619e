package event

import (
	"bytes"
	_ "embed"
	"fmt"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// schemaJSON is the JSON Schema (draft 2020-12) of a whole event, envelope and data.
//
//go:embed schema/call-event.v1.json
var schemaJSON []byte

var eventSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schemaJSON))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat() // `time` and the *_at fields must really be date-times
	if err := c.AddResource(DataSchema, doc); err != nil {
		return nil, err
	}
	return c.Compile(DataSchema)
})

// ValidateEvent checks one event, as its JSON structured-mode body, against the schema.
func ValidateEvent(doc []byte) error {
	sch, err := eventSchema()
	if err != nil {
		return fmt.Errorf("compile event schema: %w", err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return fmt.Errorf("event is not JSON: %w", err)
	}
	return sch.Validate(inst)
}
