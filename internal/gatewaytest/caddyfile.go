package gatewaytest

import (
	"slices"
	"strings"
)

// Caddyfile is a test gateway's Caddyfile in parts, so that a test states only what it varies.
// String writes the parts every test gateway has around them: the admin endpoint at {ADMIN},
// the pbx app with its store, the site at {HTTP} bound to 127.0.0.1, and the metrics site at
// {METRICS}. Each part is one directive, or a Block for one that has a block; "" is left out.
type Caddyfile struct {
	Global []string // global options besides admin and pbx: debug, servers …
	Store  string   // where the pbx app keeps the queue; "" is data_dir {DATA}
	PBX    []string // the pbx app's other options: max_store, targets, accounts …
	Site   []string // the site's directives besides bind: log, routes
}

func (c Caddyfile) String() string {
	store := c.Store
	if store == "" {
		store = "data_dir " + PData
	}
	pbx := Block("pbx", slices.Concat([]string{store}, c.PBX)...)
	global := Block("", slices.Concat([]string{"admin " + PAdmin}, c.Global, []string{pbx})...)
	site := Block(PHTTP, slices.Concat([]string{"bind 127.0.0.1"}, c.Site)...)
	metrics := Block(PMetrics, "bind 127.0.0.1", "metrics")
	return global + "\n" + site + "\n" + metrics + "\n"
}

// Block is the Caddyfile block `head { … }` with each directive of body (a Block too, or
// several lines) one tab further in. An empty head is the global options block; an empty
// directive is left out.
func Block(head string, body ...string) string {
	var b strings.Builder
	if head != "" {
		b.WriteString(head + " ")
	}
	b.WriteString("{\n")
	for _, directive := range body {
		if directive == "" {
			continue
		}
		for line := range strings.SplitSeq(directive, "\n") {
			b.WriteString("\t" + line + "\n")
		}
	}
	b.WriteString("}")
	return b.String()
}

// AccessLogWithout is the site's access log, on stderr, with the query parameters params
// deleted from the logged URI: how docs/originate.md keeps a token out of the log.
func AccessLogWithout(params ...string) string {
	deletes := make([]string, len(params))
	for i, p := range params {
		deletes[i] = "delete " + p
	}
	return Block("log", "output stderr", Block("format filter", Block("request>uri query", deletes...)))
}
