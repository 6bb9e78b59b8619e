package gatewayproc

import "testing"

// One process never gets a port twice, though each is free again once FreePort returns.
func TestFreePortNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 2000 {
		p, err := FreePort()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] || p < portsFrom || p >= portsTo {
			t.Fatalf("port %d handed out twice or outside %d-%d", p, portsFrom, portsTo)
		}
		seen[p] = true
	}
}
