// Package natstest runs real NATS JetStream servers in a test's process, on 127.0.0.1, as
// nats-server's own test helpers do.
package natstest

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Start starts a server with opts, filled in for a test: 127.0.0.1, JetStream, no signal
// handlers, no log, a free port unless opts names one. It returns once the server takes
// connections, or shuts it down and fails when it does not within 20 s (a port taken).
func Start(opts *server.Options) (*server.Server, error) {
	o := *opts
	o.Host, o.JetStream, o.NoSigs, o.NoLog = "127.0.0.1", true, true, true
	if o.Port == 0 {
		o.Port = server.RANDOM_PORT
	}
	srv, err := server.NewServer(&o)
	if err != nil {
		return nil, err
	}
	go srv.Start()
	if !srv.ReadyForConnections(20 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("NATS did not get ready (its port taken?)")
	}
	return srv, nil
}

// RunServer is Start for t: the server's store is a temporary directory unless opts gives
// one, and it shuts down when the test ends.
func RunServer(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	o := *opts
	if o.StoreDir == "" {
		o.StoreDir = t.TempDir()
	}
	srv, err := Start(&o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	return srv
}

// RunBasicJetStreamServer is a JetStream server on a free port with a temporary store.
func RunBasicJetStreamServer(t testing.TB) *server.Server {
	t.Helper()
	return RunServer(t, &server.Options{})
}
