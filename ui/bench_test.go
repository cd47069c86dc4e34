package ui

import (
	"fmt"
	"testing"

	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// BenchmarkPeerBrowser measures how the peer browser copes with a large LAN:
// opening it and drawing the first frame, narrowing the list by typing a
// search, and a peer arriving while it is open: each without drawing (the
// app's own work: building, sorting, filtering, laying out the list) and
// with a frame drawn by the Fyne test driver's software painter at 760x480.
// 200 peers run next to the 3-peer anchor in the same run;
// docs/benchmarks.md has the table.
func BenchmarkPeerBrowser(b *testing.B) {
	for _, n := range []int{3, 200} {
		peers := make([]dbusapi.Peer, n)
		for i := range peers {
			peers[i] = peer(fmt.Sprintf("peer%03d", i), fmt.Sprintf("desk-%03d", i), []dbusapi.Trust{dbusapi.TrustVerified, dbusapi.TrustNew, dbusapi.TrustChanged}[i%3])
		}
		setup := func(b *testing.B) *UI {
			f := newFake()
			f.peers = peers
			return newTestUI(b, f, nil)
		}
		for _, draw := range []bool{false, true} {
			// frame draws the window as the test driver's software painter
			// does (on screen the GL driver draws it).
			frame, suffix := func(*UI) {}, ""
			if draw {
				frame, suffix = func(u *UI) { u.peers.win.Canvas().Capture() }, "+draw"
			}
			b.Run(fmt.Sprintf("peers=%d/open%s", n, suffix), func(b *testing.B) {
				for b.Loop() {
					u := setup(b)
					u.ShowPeers()
					frame(u)
				}
			})
			b.Run(fmt.Sprintf("peers=%d/search%s", n, suffix), func(b *testing.B) {
				u := setup(b)
				u.ShowPeers()
				queries := []string{"peer1", "desk-00", "7", ""}
				i := 0
				for b.Loop() {
					u.peers.search.SetText(queries[i%len(queries)])
					frame(u)
					i++
				}
			})
			b.Run(fmt.Sprintf("peers=%d/peer-arrives%s", n, suffix), func(b *testing.B) {
				u := setup(b)
				u.ShowPeers()
				i := 0
				for b.Loop() {
					p := peer(fmt.Sprintf("new%06d", i), "laptop", "new")
					u.handle(daemon.Event{Kind: daemon.EventPeerAdded, Peer: p})
					frame(u)
					u.handle(daemon.Event{Kind: daemon.EventPeerRemoved, Peer: p})
					i++
				}
			})
		}
	}
}
