// Package eventtest checks events for tests: against event.Schema, the JSON Schema of a
// whole event.
package eventtest

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/pbxbridge/pbxbridge/event"
)

var eventSchema = sync.OnceValues(func() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(event.Schema))
	if err != nil {
		return nil, err
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat() // `time` and the *_at fields must really be date-times
	if err := c.AddResource(event.DataSchema, doc); err != nil {
		return nil, err
	}
	return c.Compile(event.DataSchema)
})

// Validate checks one event, as its JSON structured-mode body, against event.Schema.
func Validate(doc []byte) error {
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
