package delivery

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

func (e *Engine) setTracer(t trace.Tracer) {
	if t == nil {
		e.tracer.Store(nil)
		return
	}
	e.tracer.Store(&t)
}

// traceAttempt exports a delivery attempt as a span, a child of the webhook's span that the
// event carries (docs/tracing.md). It does nothing while tracing is off or when the event
// carries no trace context.
func (d *dispatcher) traceAttempt(ev *storedEvent, attempt int, out outcome, start time.Time, elapsed time.Duration) {
	tracer := d.e.tracer.Load()
	if tracer == nil || ev.traceParent == "" {
		return
	}
	parent := propagation.TraceContext{}.Extract(context.Background(), propagation.MapCarrier{"traceparent": ev.traceParent})
	if !trace.SpanContextFromContext(parent).IsValid() {
		return
	}
	_, span := (*tracer).Start(parent, "pbx.deliver", trace.WithTimestamp(start), trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(
			attribute.String("pbx.target", d.name),
			attribute.Int("pbx.attempt", attempt),
			attribute.String("pbx.result", resultOf(out)),
			attribute.String("pbx.event.id", ev.id),
			attribute.String("pbx.event.type", ev.typ),
			attribute.String("pbx.call.id", ev.callID),
		))
	if out.status != 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", out.status))
	}
	if out.class != classSuccess {
		span.SetStatus(codes.Error, out.err)
	}
	span.End(trace.WithTimestamp(start.Add(elapsed)))
}
