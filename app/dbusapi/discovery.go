package dbusapi

import (
	"context"
	"fmt"

	"github.com/godbus/dbus/v5"
)

// DiscoveryState says whether peers are found on the network, and if not,
// what is missing (the words users read are in cli and ui).
type DiscoveryState string

const (
	// DiscoveryStarting: connecting to the system bus and avahi-daemon.
	DiscoveryStarting DiscoveryState = "starting"
	// DiscoveryRunning: peers on the network are found.
	DiscoveryRunning DiscoveryState = "running"
	// DiscoveryNoSystemBus: the system bus cannot be reached.
	DiscoveryNoSystemBus DiscoveryState = "no-system-bus"
	// DiscoveryNoAvahi: avahi-daemon is not running.
	DiscoveryNoAvahi DiscoveryState = "no-avahi"
	// DiscoveryDisabled: started without discovery (--no-discovery).
	DiscoveryDisabled DiscoveryState = "disabled"
)

// Discovery is the discovery's state; Err is the error behind an off state.
type Discovery struct {
	State DiscoveryState
	Err   string
}

// Self is this user's own identity as colleagues see it: the name
// announced, the fingerprint (and its short form, to compare by voice) and
// where peers reach this computer.
type Self struct {
	Name        string
	Fingerprint string
	Short       string
	Addresses   []string // this computer's addresses (not loopback)
	Port        int      // the control port
}

// DiscoveryBackend is a Backend that says how discovery goes.
type DiscoveryBackend interface {
	Backend
	Discovery() Discovery
}

// DiscoveryStatus says whether peers on the network are found: the state
// (a DiscoveryState) and, when discovery is off, the error behind it.
func (o object) DiscoveryStatus() (state, reason string, _ *dbus.Error) {
	db, ok := o.b.(DiscoveryBackend)
	if !ok {
		return string(DiscoveryRunning), "", nil // an older daemon: no word on it
	}
	d := db.Discovery()
	return string(d.State), d.Err, nil
}

// Discovery asks the daemon how discovery goes.
func (c *Client) Discovery(ctx context.Context) (Discovery, error) {
	call := c.obj.CallWithContext(ctx, Interface+".DiscoveryStatus", 0)
	if call.Err != nil {
		return Discovery{}, remoteErr(call.Err)
	}
	var state, reason string
	if err := call.Store(&state, &reason); err != nil {
		return Discovery{}, fmt.Errorf("reading the DiscoveryStatus reply: %w", err)
	}
	return Discovery{State: DiscoveryState(state), Err: reason}, nil
}
