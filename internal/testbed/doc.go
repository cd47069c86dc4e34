// Package testbed stands up several simulated LAN hosts on one machine for
// end-to-end tests.
//
// A host is a network namespace joined by a veth pair to a bridge in a
// shared "lan" namespace, with an address from a private test range, plus a
// mount namespace whose /run is the host's own directory. Each host runs its
// own system dbus-daemon and avahi-daemon there, restricted to the host's
// veth, so mDNS never leaves the namespaces the test bed made. A Go process
// in the root namespace talks to a host's daemons through the host's bus
// socket (Host.BusAddress); commands run inside a host with Host.Command.
//
// Everything is created under one random name, ebp-tb-<id>, and torn down by
// Close (registered with t.Cleanup by New), stopping processes by pid. A test
// bed left behind by a crashed run is removed by the next Start once its
// owning process is gone.
//
// The test bed needs root, iproute2, util-linux (unshare, nsenter),
// dbus-daemon and avahi-daemon; Require skips a test without them, or fails
// it when CI=true.
//
// NewLink is a smaller bed: two namespaces, a requester and a host, each
// with one TUN device, joined by a relay in the test process that holds
// every packet for half a set round trip (the kernel here has no
// sch_netem). Sockets enter a side with Link.InRequester / Link.InHost,
// programs with Link.RequesterCommand / Link.HostCommand; it needs root
// and iproute2 only.
package testbed
