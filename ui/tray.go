package ui

import (
	"embed"
	"fmt"
	"sort"
	"strings"

	"fyne.io/fyne/v2"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// trayIcons are copies of assets/tray/*.png (a test checks they match):
// off (not sharing), sharing, active (sessions running).
//
//go:embed trayicons/*.png
var trayIcons embed.FS

// Tray icon states.
const (
	trayOff     = "off"
	traySharing = "sharing"
	trayActive  = "active"
)

func trayIcon(state string) fyne.Resource {
	b, err := trayIcons.ReadFile("trayicons/" + state + ".png")
	if err != nil {
		panic(fmt.Sprintf("tray icon %s missing from the binary: %v", state, err)) // build error
	}
	return fyne.NewStaticResource("ebrainpool-"+state+".png", b)
}

// peerApps is a peer's app list as the tray last fetched it.
type peerApps struct {
	apps []dbusapi.App
	err  error
}

// tray is the system tray icon and menu (a StatusNotifierItem).
type tray struct {
	u       *UI
	host    trayHost // nil when there is no tray
	apps    map[string]peerApps
	loading map[string]bool
	state   string
	// shown sums up the menu the host has (see menuSig).
	shown string
	// toggle is the last menu's sharing on/off item.
	toggle *fyne.MenuItem
	// off: there is no tray here (the window process).
	off bool
}

func newTray(u *UI, host trayHost) *tray {
	return &tray{u: u, host: host, apps: map[string]peerApps{}, loading: map[string]bool{}}
}

// install shows the tray icon and fetches the peers' apps for the menu.
func (t *tray) install() {
	if t.off {
		return
	}
	for _, p := range t.u.b.Peers() {
		t.fetch(p.Fingerprint)
	}
	t.update()
}

// fetch loads a peer's apps for its submenu.
func (t *tray) fetch(fp string) {
	if t.off || t.loading[fp] {
		return
	}
	t.loading[fp] = true
	t.u.spawn(func() {
		apps, err := t.u.b.Apps(t.u.ctx, fp)
		t.u.do(func() {
			delete(t.loading, fp)
			t.setApps(fp, apps, err)
		})
	})
}

func (t *tray) setApps(fp string, apps []dbusapi.App, err error) {
	t.apps[fp] = peerApps{apps: apps, err: err}
	t.update()
}

// peerChanged follows a peer coming or going.
func (t *tray) peerChanged(fp string) {
	if t.off {
		return
	}
	if _, ok := t.u.peer(fp); ok {
		if _, cached := t.apps[fp]; !cached {
			t.fetch(fp)
		}
	} else {
		delete(t.apps, fp)
	}
	t.update()
}

// reset sets the icon and menu again (a tray host that appeared or
// restarted).
func (t *tray) reset() {
	t.state, t.shown = "", ""
	t.update()
}

// iconState picks the icon: active while sessions run, else sharing (on
// and possible) or off.
func (t *tray) iconState() string {
	if len(t.u.b.Sessions()) > 0 || t.u.launches.active() > 0 {
		return trayActive
	}
	if t.u.b.Settings().Sharing && t.u.b.SandboxError() == nil {
		return traySharing
	}
	return trayOff
}

// update redraws the icon and the menu.
func (t *tray) update() {
	if t.off {
		return
	}
	state := t.iconState()
	if t.host == nil {
		t.state = state
		return
	}
	if state != t.state {
		t.host.SetIcon(trayIcon(state))
	}
	t.state = state
	// Only a changed menu is sent: each change makes the tray host fetch
	// the layout again (see systemTray.SetMenu for how item ids are kept).
	m := t.menu()
	if sig := t.menuSig(m); sig != t.shown {
		t.shown = sig
		t.host.SetMenu(m)
	}
}

// menuSig sums up what the menu shows and what its items act on.
func (t *tray) menuSig(m *fyne.Menu) string {
	var b strings.Builder
	var walk func(*fyne.Menu)
	walk = func(m *fyne.Menu) {
		for _, i := range m.Items {
			fmt.Fprintf(&b, "%q %t %t %t %t[", i.Label, i.IsSeparator, i.Checked, i.Disabled, i.IsQuit)
			if i.ChildMenu != nil {
				walk(i.ChildMenu)
			}
			b.WriteString("]")
		}
	}
	walk(m)
	var fps []string
	for _, p := range t.u.b.Peers() {
		fps = append(fps, p.Fingerprint)
	}
	sort.Strings(fps)
	for _, fp := range fps {
		fmt.Fprintf(&b, "\n%s", fp)
		for _, a := range t.apps[fp].apps {
			fmt.Fprintf(&b, " %q", a.ID)
		}
	}
	return b.String()
}

// menu builds the tray menu: one submenu per peer with its apps, then the
// windows, sharing on/off and Quit.
func (t *tray) menu() *fyne.Menu {
	var items []*fyne.MenuItem
	peers := t.u.b.Peers()
	sort.SliceStable(peers, func(i, j int) bool { return strings.ToLower(peers[i].Name) < strings.ToLower(peers[j].Name) })
	if len(peers) == 0 {
		none := fyne.NewMenuItem("No peers found yet", nil)
		none.Disabled = true
		items = append(items, none)
	}
	for _, p := range peers {
		items = append(items, t.peerItem(p))
	}
	sessions := "Sessions"
	if n := len(t.u.b.Sessions()); n > 0 {
		sessions = fmt.Sprintf("Sessions (%d running)", n)
	}
	sharing := fyne.NewMenuItem("Share my apps", nil)
	t.toggle = nil
	switch {
	case t.u.b.SandboxError() == nil:
		sharing.Checked = t.u.b.Settings().Sharing
		sharing.Action = func() { t.u.setSharing(!sharing.Checked) }
		t.toggle = sharing
	case t.u.settingUp():
		sharing.Label = "Setting up sharing…"
		sharing.Disabled = true
	case t.u.b.CanSetUpSharing():
		// The one-time setup is what is missing: run it (in Settings,
		// which shows how it goes).
		sharing.Label = "Set up sharing…"
		sharing.Action = t.u.setUpSharing
	default:
		// Why is in Settings; the toggle would change nothing.
		sharing.Label = "Sharing unavailable (see Settings)"
		sharing.Disabled = true
	}
	quit := fyne.NewMenuItem("Quit", t.u.Quit)
	quit.IsQuit = true
	items = append(items,
		fyne.NewMenuItemSeparator(),
		fyne.NewMenuItem("Open peer browser", t.u.ShowPeers),
		fyne.NewMenuItem(sessions, t.u.ShowSessions),
		sharing,
		fyne.NewMenuItem("Settings", t.u.ShowSettings),
		fyne.NewMenuItemSeparator(),
		quit,
	)
	return fyne.NewMenu("eBrainPool", items...)
}

func (t *tray) peerItem(p dbusapi.Peer) *fyne.MenuItem {
	label := p.Name
	if p.Host != "" {
		label += " (" + p.Host + ")"
	}
	if p.Trust == dbusapi.TrustChanged {
		label = "⚠ " + label + ": KEY CHANGED"
	}
	item := fyne.NewMenuItem(label, nil)
	var sub []*fyne.MenuItem
	pa, ok := t.apps[p.Fingerprint]
	switch {
	case p.Trust == dbusapi.TrustChanged:
		sub = append(sub, disabledItem("Its key changed: see the peer browser"))
	case !ok:
		sub = append(sub, disabledItem("Loading apps…"))
	case pa.err != nil:
		sub = append(sub, disabledItem("Could not reach it"))
	case len(pa.apps) == 0:
		sub = append(sub, disabledItem("Shares no apps"))
	default:
		for _, a := range pa.apps {
			peer, app := p, a
			sub = append(sub, fyne.NewMenuItem(a.Name, func() { t.u.launch(peer, app) }))
		}
	}
	fp := p.Fingerprint
	sub = append(sub, fyne.NewMenuItemSeparator(), fyne.NewMenuItem("Show in peer browser", func() { t.u.showPeer(fp) }))
	item.ChildMenu = fyne.NewMenu(label, sub...)
	return item
}

func disabledItem(label string) *fyne.MenuItem {
	i := fyne.NewMenuItem(label, nil)
	i.Disabled = true
	return i
}
