package testbed

import (
	"fmt"
	"strings"
)

// busConfig is a system bus that listens in the host's private /run and lets
// every local user connect, own names and call anything: the host is a
// throw-away test machine.
const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=/run/dbus/system_bus_socket</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*"/>
    <allow receive_sender="*"/>
  </policy>
</busconfig>
`

// avahiConfig returns an avahi-daemon.conf for one host: only iface, no
// workstation record, no reflector, wide-area DNS-SD only if asked (its
// servers are resolv.conf's).
func avahiConfig(hostName, iface string, ipv4, ipv6, wideArea bool) string {
	yesNo := func(b bool) string {
		if b {
			return "yes"
		}
		return "no"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "[server]\nhost-name=%s\ndomain-name=local\nuse-ipv4=%s\nuse-ipv6=%s\n", hostName, yesNo(ipv4), yesNo(ipv6))
	fmt.Fprintf(&b, "allow-interfaces=%s\nenable-dbus=yes\nratelimit-interval-usec=1000000\nratelimit-burst=1000\n", iface)
	fmt.Fprintf(&b, "\n[wide-area]\nenable-wide-area=%s\n", yesNo(wideArea))
	b.WriteString("\n[publish]\npublish-workstation=no\npublish-hinfo=no\npublish-addresses=yes\n")
	b.WriteString("\n[reflector]\nenable-reflector=no\n")
	return b.String()
}
