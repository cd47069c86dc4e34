package cli

import (
	"context"
	"fmt"
	"io"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// discoveryWords say why peers on the network are not found ("" when
// they are).
var discoveryWords = map[dbusapi.DiscoveryState]string{
	dbusapi.DiscoveryRunning:     "",
	dbusapi.DiscoveryStarting:    "",
	dbusapi.DiscoveryNoAvahi:     "discovery is off: avahi-daemon is not running: install/start it, or add a peer by address (`ebrainpool peer add HOST`)",
	dbusapi.DiscoveryNoSystemBus: "discovery is off: there is no system bus (D-Bus), which avahi-daemon needs: start them, or add a peer by address (`ebrainpool peer add HOST`)",
	dbusapi.DiscoveryDisabled:    "discovery is off (started with --no-discovery): peers are only those added by address",
}

// discoveryNote writes to w why peers on the network are not found, when
// they are not (nothing for a daemon that does not say).
func discoveryNote(ctx context.Context, c *dbusapi.Client, w io.Writer) {
	d, err := c.Discovery(ctx)
	if err != nil {
		return
	}
	text, known := discoveryWords[d.State]
	if !known {
		text = "discovery is off: " + d.Err
	}
	if text != "" {
		fmt.Fprintln(w, text)
	}
}
