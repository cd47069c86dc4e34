package dbusapi

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
