package cluster

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/pbxbridge/pbxbridge/internal/gatewaytest"
	"github.com/pbxbridge/pbxbridge/internal/natstest"
)

// natsCluster is a NATS JetStream cluster of in-process servers on 127.0.0.1 ports, each with
// its own store, that a test can shut down and start again node by node.
type natsCluster struct {
	t     *testing.T
	nodes []*natsNode
	js    jetstream.JetStream // the test's own connection, for what the gateways do not show
}

type natsNode struct {
	name string
	// port and clusterPort are 0 until the node first starts: it binds free ones itself
	// (picking them beforehand let another process take one first), and keeps them.
	port, clusterPort int
	dir               string
	srv               *server.Server
}

func startNATSCluster(t *testing.T, size int) *natsCluster {
	t.Helper()
	c := &natsCluster{t: t}
	for i := range size {
		c.nodes = append(c.nodes, &natsNode{name: fmt.Sprintf("n%d", i+1), dir: t.TempDir()})
		c.start(i) // with routes to the nodes before it; they tell each other of the rest
	}
	t.Cleanup(func() {
		for _, n := range c.nodes {
			if n.srv != nil {
				n.srv.Shutdown()
			}
		}
	})
	nc, err := nats.Connect(strings.Join(c.URLs(), ","), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if c.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	// The gateways create replicated streams at start: wait until the cluster can.
	gatewaytest.Eventually(t, 60*time.Second, "a JetStream cluster that creates a replicated stream", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := c.js.CreateStream(ctx, jetstream.StreamConfig{Name: "PROBE", Subjects: []string{"probe"}, Replicas: size})
		return err == nil && c.js.DeleteStream(ctx, "PROBE") == nil
	})
	return c
}

// start runs node i (again) with its ports and store.
func (c *natsCluster) start(i int) {
	c.t.Helper()
	n := c.nodes[i]
	var routes []string
	for _, other := range c.nodes {
		if other != n && other.clusterPort != 0 {
			routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", other.clusterPort))
		}
	}
	port, clusterPort := server.RANDOM_PORT, server.RANDOM_PORT
	if n.port != 0 {
		port, clusterPort = n.port, n.clusterPort
	}
	opts := &server.Options{
		ServerName: n.name, Port: port, StoreDir: n.dir,
		Cluster: server.ClusterOpts{Name: "pbxbridge-test", Host: "127.0.0.1", Port: clusterPort},
		Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
	}
	// A port of a node that was down may be some process's for a moment (a connection's
	// local port): a server that cannot bind never gets ready, so try again.
	gatewaytest.Eventually(c.t, time.Minute, "NATS node "+n.name+" listening", func() bool {
		srv, err := natstest.Start(opts)
		n.srv = srv
		return err == nil
	})
	n.port, n.clusterPort = n.srv.Addr().(*net.TCPAddr).Port, n.srv.ClusterAddr().Port
}

// stop shuts node i down, as a node that goes away: its clients reconnect to the others.
func (c *natsCluster) stop(i int) {
	n := c.nodes[i]
	n.srv.Shutdown()
	n.srv.WaitForShutdown()
	n.srv = nil
}

// URLs are the client URLs of every node.
func (c *natsCluster) URLs() []string {
	var urls []string
	for _, n := range c.nodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", n.port))
	}
	return urls
}

// consumerLeader is the index of the node that leads a consumer: the one whose loss moves the
// consumer's pin.
func (c *natsCluster) consumerLeader(stream, consumer string) int {
	c.t.Helper()
	var leader string
	gatewaytest.Eventually(c.t, 30*time.Second, "a consumer leader", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		cons, err := c.js.Consumer(ctx, stream, consumer)
		if err != nil {
			return false
		}
		if info := cons.CachedInfo(); info.Cluster != nil {
			leader = info.Cluster.Leader
		}
		return leader != ""
	})
	for i, n := range c.nodes {
		if n.name == leader {
			return i
		}
	}
	c.t.Fatalf("consumer leader %q is no node of the cluster", leader)
	return -1
}
