package ui

import (
	"context"
	"errors"
	"fmt"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/dialog"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/ebrainpool/ebrainpool/app/config"
	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/identity"
)

// "Add peer by address…" in the peer browser: for a colleague discovery
// does not reach (another subnet, a VPN). The dialog connects to the
// address, shows the name and short fingerprint the peer there shows, and
// adds it only when the user confirms (after comparing the fingerprint
// with what the colleague's Settings or `ebrainpool id` shows).

// AddressBackend is a Backend that adds peers by address (*daemon.Daemon
// is one, and the window process's backend through the app).
type AddressBackend interface {
	ProbePeer(ctx context.Context, address string) (dbusapi.Probed, error)
	AddPeerAddress(ctx context.Context, address, fingerprint string) (dbusapi.AddedPeer, error)
}

// addPeerTimeout bounds one probe or add (the daemon's own connect is
// bounded too).
const addPeerTimeout = 30 * time.Second

// addPeerDialog is the open dialog (nil when none is).
type addPeerDialog struct {
	dlg     dialog.Dialog
	address *widget.Entry
	connect *widget.Button
	status  *widget.Label
	key     *widget.Label
	add     *widget.Button
	cancel  *widget.Button
	probed  *dbusapi.Probed // what the address showed, once it answered
}

// addPeerButton is the peer browser's "Add peer by address…" button
// (disabled when the backend cannot add peers by address).
func (pb *peerBrowser) addPeerButton() *widget.Button {
	b := widget.NewButtonWithIcon("Add peer by address…", theme.ContentAddIcon(), pb.showAddPeer)
	if _, ok := pb.u.b.(AddressBackend); !ok {
		b.Disable()
	}
	pb.addBtn = b
	return b
}

// showAddPeer opens the dialog.
func (pb *peerBrowser) showAddPeer() {
	ab, ok := pb.u.b.(AddressBackend)
	if !ok {
		return
	}
	d := &addPeerDialog{}
	d.address = widget.NewEntry()
	d.address.SetPlaceHolder(fmt.Sprintf("host name or IP address, :PORT if not %d", config.DefaultControlPort))
	d.status = widget.NewLabel("Give the address of the colleague's computer.")
	d.status.Wrapping = fyne.TextWrapWord
	d.key = widget.NewLabelWithStyle("", fyne.TextAlignLeading, fyne.TextStyle{Monospace: true})
	d.key.Hide()
	d.add = widget.NewButtonWithIcon("Add", theme.ConfirmIcon(), func() { pb.confirmAddPeer(ab, d) })
	d.add.Disable()
	d.connect = widget.NewButton("Connect", func() { pb.probeAddPeer(ab, d) })
	d.address.OnSubmitted = func(string) { pb.probeAddPeer(ab, d) }
	d.address.OnChanged = func(string) {
		// Another address: what the old one showed no longer counts.
		d.probed = nil
		d.add.Disable()
		d.key.Hide()
	}
	d.cancel = widget.NewButton("Cancel", func() { d.dlg.Hide() })
	content := container.NewVBox(
		container.NewBorder(nil, nil, nil, d.connect, d.address),
		d.status, d.key,
		container.NewHBox(d.cancel, d.add),
	)
	d.dlg = dialog.NewCustomWithoutButtons("Add peer by address", content, pb.win)
	d.dlg.SetOnClosed(func() {
		if pb.adding == d {
			pb.adding = nil
		}
	})
	pb.adding = d
	d.dlg.Resize(fyne.NewSize(480, 240))
	d.dlg.Show()
	pb.win.Canvas().Focus(d.address)
}

// probeAddPeer connects to the address typed and shows who answers.
func (pb *peerBrowser) probeAddPeer(ab AddressBackend, d *addPeerDialog) {
	addr, err := config.NormalizePeerAddress(d.address.Text)
	if err != nil {
		d.status.SetText(sentence(err.Error()))
		return
	}
	d.status.SetText("Connecting to " + addr + "…")
	d.connect.Disable()
	pb.u.spawn(func() {
		ctx, cancel := context.WithTimeout(pb.u.ctx, addPeerTimeout)
		defer cancel()
		p, err := ab.ProbePeer(ctx, addr)
		pb.u.do(func() {
			d.connect.Enable()
			if err != nil {
				d.status.SetText(sentence(err.Error()))
				return
			}
			d.probed = &p
			msg := fmt.Sprintf("%q answers at %s with this key. Compare it with what %s's Settings or `ebrainpool id` shows before adding it:", p.Name, p.Address, p.Name)
			if p.Known {
				msg += " (you have met this key before)"
			}
			d.status.SetText(msg)
			d.key.SetText(p.Short)
			d.key.Show()
			d.add.Enable()
		})
	})
}

// confirmAddPeer adds the peer with the key the dialog showed.
func (pb *peerBrowser) confirmAddPeer(ab AddressBackend, d *addPeerDialog) {
	p := d.probed
	if p == nil {
		return
	}
	d.add.Disable()
	d.status.SetText("Adding " + p.Name + "…")
	pb.u.spawn(func() {
		ctx, cancel := context.WithTimeout(pb.u.ctx, addPeerTimeout)
		defer cancel()
		_, err := ab.AddPeerAddress(ctx, p.Address, p.Fingerprint)
		pb.u.do(func() {
			if err != nil {
				d.status.SetText(sentence(err.Error()))
				return
			}
			d.dlg.Hide()
			pb.reload()
			pb.selectPeer(p.Fingerprint)
		})
	})
}

// The window process reaches the daemon's ProbePeer and AddPeerAddress
// through the app.

// ProbePeerArgs asks what the peer at an address shows (ProbePeer).
type ProbePeerArgs struct{ Address string }

// AddPeerArgs adds the peer at an address with the confirmed key.
type AddPeerArgs struct{ Address, Fingerprint string }

// ProbePeer asks the daemon what the peer at the address shows.
func (s *AppService) ProbePeer(a ProbePeerArgs, reply *dbusapi.Probed) error {
	return s.withAddress(func(ctx context.Context, ab AddressBackend) (err error) {
		*reply, err = ab.ProbePeer(ctx, a.Address)
		return err
	})
}

// AddPeerAddress asks the daemon to add the peer at the address.
func (s *AppService) AddPeerAddress(a AddPeerArgs, reply *dbusapi.AddedPeer) error {
	return s.withAddress(func(ctx context.Context, ab AddressBackend) (err error) {
		*reply, err = ab.AddPeerAddress(ctx, a.Address, a.Fingerprint)
		return err
	})
}

// withAddress runs f with the app's backend as an AddressBackend, within
// addPeerTimeout.
func (s *AppService) withAddress(f func(context.Context, AddressBackend) error) error {
	u := s.wp.u
	ab, ok := u.b.(AddressBackend)
	if !ok {
		return errors.New("this eBrainPool cannot add peers by address")
	}
	ctx, cancel := context.WithTimeout(u.ctx, addPeerTimeout)
	defer cancel()
	return f(ctx, ab)
}

func (r *remoteBackend) ProbePeer(ctx context.Context, address string) (dbusapi.Probed, error) {
	var out dbusapi.Probed
	return out, r.callCtx(ctx, "ProbePeer", ProbePeerArgs{Address: address}, &out)
}

func (r *remoteBackend) AddPeerAddress(ctx context.Context, address, fingerprint string) (dbusapi.AddedPeer, error) {
	var out dbusapi.AddedPeer
	return out, r.callCtx(ctx, "AddPeerAddress", AddPeerArgs{Address: address, Fingerprint: fingerprint}, &out)
}

// AddedPeersBackend lists the peers added by address, with how they
// answer (*daemon.Daemon is one, and the window process's backend through
// the app).
type AddedPeersBackend interface {
	AddedPeers() []dbusapi.AddedPeer
}

// AddedPeers lists the daemon's peers added by address.
func (s *AppService) AddedPeers(_ int, reply *[]dbusapi.AddedPeer) error {
	if ab, ok := s.wp.u.b.(AddedPeersBackend); ok {
		*reply = ab.AddedPeers()
	}
	return nil
}

func (r *remoteBackend) AddedPeers() []dbusapi.AddedPeer {
	var out []dbusapi.AddedPeer
	r.get("AddedPeers", &out)
	return out
}

// addedText says, for a peer added by address, where and how it answers,
// e.g. "\nAdded by address: bob.example.org:42331, unreachable (last seen
// 10:32: connection refused)"; "" for other peers.
func addedText(b Backend, fp string) string {
	ab, ok := b.(AddedPeersBackend)
	if !ok {
		return ""
	}
	for _, a := range ab.AddedPeers() {
		if a.Fingerprint != fp {
			continue
		}
		seen := "never seen"
		if a.LastSeen > 0 {
			seen = "last seen " + time.Unix(a.LastSeen, 0).Format("Jan 2 15:04")
		}
		switch a.Reach {
		case dbusapi.ReachReachable:
			return fmt.Sprintf("\nAdded by address: %s, reachable (%s)", a.Address, seen)
		case dbusapi.ReachUnreachable:
			why := ""
			if a.Error != "" {
				why = ": " + plainText(a.Error)
			}
			return fmt.Sprintf("\nAdded by address: %s, unreachable (%s%s)", a.Address, seen, why)
		}
		return fmt.Sprintf("\nAdded by address: %s, not tried yet", a.Address)
	}
	return ""
}

var (
	_ AddressBackend    = (*remoteBackend)(nil)
	_ AddressBackend    = (*daemon.Daemon)(nil)
	_ AddedPeersBackend = (*remoteBackend)(nil)
	_ AddedPeersBackend = (*daemon.Daemon)(nil)
)

// introText says how a peer relates to introducers, for the peer list
// and its details ("" for most peers).
func introText(p dbusapi.Peer) string {
	switch {
	case p.IntroducedBy != "":
		return " · introduced by " + p.IntroducedBy
	case p.Introducer:
		return " · introducer"
	}
	return ""
}

// IntroducerBackend is a Backend whose user can mark peers as
// introducers (*daemon.Daemon is one, and the window process's backend
// through the app).
type IntroducerBackend interface {
	SetIntroducer(peer string, on bool) error
}

var (
	_ IntroducerBackend = (*remoteBackend)(nil)
	_ IntroducerBackend = (*daemon.Daemon)(nil)
)

// introducers are the listed peers marked as introducers (by
// fingerprint).
func (s *settingsView) introducers() map[string]bool {
	out := map[string]bool{}
	for _, p := range s.u.b.Peers() {
		if p.Introducer {
			out[p.Fingerprint] = true
		}
	}
	return out
}

// introducerCheck is a known peer's "Introducer" box in Settings: ticked,
// the peer is asked for the peers it knows, which are listed as
// introduced by it (off by default; disabled without the backend).
func (s *settingsView) introducerCheck(fp identity.Fingerprint, name string, on bool) *widget.Check {
	var c *widget.Check
	c = widget.NewCheck("Introducer", func(want bool) {
		ib, ok := s.u.b.(IntroducerBackend)
		if !ok {
			return
		}
		if err := ib.SetIntroducer(string(fp), want); err != nil {
			s.setStatus(fmt.Errorf("%s as introducer: %w", name, err), "")
			s.loadPeers()
			return
		}
		if want {
			s.setStatus(nil, name+" is an introducer: the peers "+name+" knows appear in the peer browser as introduced by "+name+".")
		} else {
			s.setStatus(nil, name+" is no longer an introducer.")
		}
	})
	c.Checked = on
	if _, ok := s.u.b.(IntroducerBackend); !ok {
		c.Disable()
	}
	return c
}

// SetIntroducer asks the daemon to mark (or unmark) a peer as
// introducer.
func (s *AppService) SetIntroducer(a IntroducerArgs, _ *bool) error {
	ib, ok := s.wp.u.b.(IntroducerBackend)
	if !ok {
		return errors.New("this eBrainPool has no introducers")
	}
	return ib.SetIntroducer(a.Peer, a.On)
}

// IntroducerArgs marks a peer as introducer (SetIntroducer).
type IntroducerArgs struct {
	Peer string
	On   bool
}

func (r *remoteBackend) SetIntroducer(peer string, on bool) error {
	return r.callCtx(context.Background(), "SetIntroducer", IntroducerArgs{Peer: peer, On: on}, new(bool))
}

// portItem is the control port's row in Settings; its hint says when the
// port asked for was taken and which one peers reach instead.
func (s *settingsView) portItem() *widget.FormItem {
	item := widget.NewFormItem("Peers reach me on port", s.port)
	if pn, ok := s.u.b.(interface{ PortNote() string }); ok {
		if note := pn.PortNote(); note != "" {
			item.HintText = sentence(note)
		}
	}
	return item
}

// PortNote says why the control port is not the one asked for ("" when
// it is).
func (s *AppService) PortNote(_ int, reply *string) error {
	if pn, ok := s.wp.u.b.(interface{ PortNote() string }); ok {
		*reply = pn.PortNote()
	}
	return nil
}

func (r *remoteBackend) PortNote() string {
	var note string
	if err := r.callCtx(context.Background(), "PortNote", 0, &note); err != nil {
		return ""
	}
	return note
}
