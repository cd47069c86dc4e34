package ui

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// Discovery and identity in view: the peer browser says who the user is
// (name, address, short fingerprint, for a colleague to compare) and,
// when peers on the network cannot be found, that discovery is off and
// why.

// selfView is that part of the peer browser.
type selfView struct {
	u         *UI
	you       *widget.Label
	discovery *widget.Label
	box       *fyne.Container
}

func newSelfView(u *UI) *selfView {
	v := &selfView{u: u, you: widget.NewLabel(""), discovery: widget.NewLabel("")}
	v.you.Wrapping = fyne.TextWrapWord
	v.you.SizeName = theme.SizeNameCaptionText
	v.discovery.Wrapping = fyne.TextWrapWord
	v.discovery.Importance = widget.WarningImportance
	v.box = container.NewVBox(v.you, v.discovery)
	v.refresh()
	return v
}

// refresh reads the identity and the discovery's state again.
func (v *selfView) refresh() {
	v.you.SetText(selfText(v.u.b.Self()))
	if t := discoveryText(v.u.b.Discovery()); t != "" {
		v.discovery.SetText(t)
		v.discovery.Show()
	} else {
		v.discovery.Hide()
	}
}

// selfText is how the user's own identity is shown.
func selfText(s dbusapi.Self) string {
	var where []string
	for _, a := range s.Addresses {
		where = append(where, net.JoinHostPort(a, strconv.Itoa(s.Port)))
	}
	if len(where) == 0 && s.Port != 0 {
		where = append(where, "port "+strconv.Itoa(s.Port))
	}
	return fmt.Sprintf("You: %s · %s · fingerprint %s", s.Name, strings.Join(where, ", "), s.Short)
}

// discoveryWords are what the peer browser says when peers on the network
// cannot be found ("" when they can).
var discoveryWords = map[dbusapi.DiscoveryState]string{
	dbusapi.DiscoveryRunning:     "",
	dbusapi.DiscoveryStarting:    "",
	dbusapi.DiscoveryNoAvahi:     "Discovery is off: avahi-daemon is not running: install/start it, or add a peer by address.",
	dbusapi.DiscoveryNoSystemBus: "Discovery is off: there is no system bus (D-Bus), which avahi-daemon needs: start them, or add a peer by address.",
	dbusapi.DiscoveryDisabled:    "Discovery is off (eBrainPool was started with --no-discovery): add a peer by address.",
}

// discoveryText words a discovery state.
func discoveryText(d dbusapi.Discovery) string {
	t, ok := discoveryWords[d.State]
	if !ok {
		return "Discovery is off: " + d.Err
	}
	return t
}

// Discovery is the daemon's discovery state (the window process asks
// through the app).
func (s *AppService) Discovery(_ int, reply *dbusapi.Discovery) error {
	*reply = s.b().Discovery()
	return nil
}

// Self is the user's own identity.
func (s *AppService) Self(_ int, reply *dbusapi.Self) error {
	*reply = s.b().Self()
	return nil
}

func (r *remoteBackend) Discovery() dbusapi.Discovery {
	var d dbusapi.Discovery
	r.get("Discovery", &d)
	return d
}

func (r *remoteBackend) Self() dbusapi.Self {
	var s dbusapi.Self
	r.get("Self", &s)
	return s
}
