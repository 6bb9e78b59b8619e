// Command benthos-peer is Benthos v4 (the stream processor Bento was forked from) built with
// only the components the benchmark's peer phases use: http_server input, the mapping
// processor and Bloblang, http_client output, and the none and memory buffers. It is its own
// module, so that the gateway's go.mod never depends on it; pbxbridge-bench --peers builds it.
//
// Benthos's core has no Prometheus exporter, so when PEER_METRICS_ADDR is set the process
// also serves go_memstats_mallocs_total there (the Go collector's name, the counter the bench
// reads from pbxbridge), for allocations per event.
package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"runtime"

	_ "github.com/redpanda-data/benthos/v4/public/components/io"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
)

func main() {
	if addr := os.Getenv("PEER_METRICS_ADDR"); addr != "" {
		go func() {
			err := http.ListenAndServe(addr, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				fmt.Fprintf(w, "go_memstats_mallocs_total %d\n", m.Mallocs)
			}))
			fmt.Fprintln(os.Stderr, "peer metrics:", err)
		}()
	}
	service.RunCLI(context.Background())
}
