package caddymodule

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/pbxbridge/pbxbridge/event"
	"github.com/pbxbridge/pbxbridge/pbx"
)

// tracerProvider exports the pbx app's spans (docs/tracing.md). Like Caddy's tracing
// directive it is one for the process, made at the first config that turns tracing on and
// configured by the standard OTEL_* environment variables, so reloads leak no exporter.
var tracerProvider struct {
	once sync.Once
	tp   *sdktrace.TracerProvider
	err  error
}

// provisionTracer sets a.tracer when the app's `tracing` option is on.
func (a *App) provisionTracer() error {
	if !a.Tracing {
		return nil
	}
	tracerProvider.once.Do(func() {
		ctx := context.Background()
		exporter, err := autoexport.NewSpanExporter(ctx)
		if err != nil {
			tracerProvider.err = err
			return
		}
		version, _ := caddy.Version()
		res, err := resource.New(ctx,
			resource.WithAttributes(attribute.String("service.name", "pbxbridge"), attribute.String("service.version", version)),
			resource.WithFromEnv(), // OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES win
			resource.WithTelemetrySDK())
		if err != nil {
			tracerProvider.err = err
			return
		}
		tracerProvider.tp = sdktrace.NewTracerProvider(sdktrace.WithBatcher(exporter), sdktrace.WithResource(res))
	})
	if tracerProvider.err != nil {
		return tracerProvider.err
	}
	a.tracer = tracerProvider.tp.Tracer("github.com/pbxbridge/pbxbridge")
	return nil
}

// flushTraces hands the spans still batched to the exporter, when a config stops.
func flushTraces() {
	if tracerProvider.tp == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = tracerProvider.tp.ForceFlush(ctx)
}

// ingestSpan is a webhook's span, or nil while tracing is off.
type ingestSpan struct{ trace.Span }

// traceIngest returns r with the webhook's trace context: its span when tracing is on, a
// child of the request's span (Caddy's tracing directive) or else of the PBX's traceparent
// header; with tracing off, that inbound context alone, if any, which its events then carry.
func (a *App) traceIngest(r *http.Request, origin event.Origin) (*http.Request, ingestSpan) {
	ctx := r.Context()
	if !trace.SpanContextFromContext(ctx).IsValid() && r.Header.Get("traceparent") != "" {
		ctx = propagation.TraceContext{}.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	var span ingestSpan
	if a.tracer != nil {
		ctx, span.Span = a.tracer.Start(ctx, "pbx.ingest", trace.WithSpanKind(trace.SpanKindServer),
			trace.WithAttributes(attribute.String("pbx.pbx", origin.PBX), attribute.String("pbx.account", origin.Account)))
	}
	if ctx == r.Context() {
		return r, span
	}
	return r.WithContext(ctx), span
}

// end ends the span with how the webhook was answered.
func (s ingestSpan) end(outcome string, rej *pbx.Rejection) {
	if s.Span == nil {
		return
	}
	if rej != nil {
		outcome = "rejected"
		s.SetAttributes(attribute.String("pbx.reason", rej.Reason), attribute.Int("http.response.status_code", rej.Status))
		if rej.Status >= 500 {
			s.SetStatus(codes.Error, rej.Msg)
		}
	}
	s.SetAttributes(attribute.String("pbx.outcome", outcome))
	s.End()
}

// carryTrace writes the webhook's trace context into its events.
func carryTrace(ctx context.Context, events []event.Event) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return
	}
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(trace.ContextWithSpanContext(context.Background(), sc), carrier)
	for i := range events {
		events[i].TraceParent = carrier["traceparent"]
	}
}
