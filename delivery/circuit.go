package delivery

import (
	"time"
)

// circuitCalls is how many distinct calls must fail, with no success between, to open the
// circuit: one poisoned call never does.
const circuitCalls = 5

// circuit stops traffic to a target that is down. It opens on a connection error or timeout,
// or when failures span circuitCalls distinct calls with no success between. While open only
// one probe is in flight at a time, spaced by exponential backoff; the first success closes it
// and traffic resumes at full concurrency. Nothing is dead-lettered for the outage itself:
// events wait in their lanes.
type circuit struct {
	open       bool
	failed     map[string]struct{} // calls failed since the last success
	probing    bool
	nextProbe  time.Time
	probeDelay time.Duration
	// reason says why a CRM connector refused the target as a whole (crm.Down), while open.
	reason string
}

// allow says whether an attempt may start now, and whether it is the probe.
func (c *circuit) allow(now time.Time) (allowed, probe bool) {
	if !c.open {
		return true, false
	}
	if c.probing || now.Before(c.nextProbe) {
		return false, false
	}
	c.probing = true
	return true, true
}

// record notes an attempt's outcome. It returns how long until the next probe may start when
// the circuit is (still) open, so the caller can wake waiters then.
func (c *circuit) record(key string, out outcome, probe bool, now time.Time, t Target) time.Duration {
	if probe {
		c.probing = false
	}
	switch {
	case out.class == classSuccess:
		c.open, c.reason = false, ""
		c.failed = nil
		c.probeDelay = 0
		return 0
	case out.class != classRetry:
		return 0 // the target answered: it is up, whatever it thought of this event
	}
	if out.down {
		c.reason = out.err
	}
	if !c.open {
		if c.failed == nil {
			c.failed = map[string]struct{}{}
		}
		c.failed[key] = struct{}{}
		if !out.unreachable && len(c.failed) < circuitCalls {
			return 0
		}
		c.open = true
		c.probeDelay = 0
	} else if !probe {
		// An attempt that started before the circuit opened: no new probe schedule.
		return time.Until(c.nextProbe)
	}
	c.probeDelay = min(max(2*c.probeDelay, t.BackoffMin), t.BackoffMax)
	c.nextProbe = now.Add(c.probeDelay)
	return c.probeDelay
}
