package discovery

import (
	"net/netip"
	"testing"

	"github.com/ebrainpool/ebrainpool/app/identity"
)

func TestTable(t *testing.T) {
	const other = identity.Fingerprint("SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	ann := Announcement{Version: 1, Fingerprint: testFP, Name: "Bob"}
	v4 := itemKey{iface: 2, proto: 0, name: "Bob", domain: "local"}
	v6 := itemKey{iface: 2, proto: 1, name: "Bob", domain: "local"}
	res := func(a Announcement, addr string) resolution {
		return resolution{ann: a, host: "host2.local", addr: netip.MustParseAddr(addr), port: 4000}
	}
	kinds := func(evs []Event) []EventKind {
		var ks []EventKind
		for _, e := range evs {
			ks = append(ks, e.Kind)
		}
		return ks
	}
	tb := newTable()
	steps := []struct {
		name  string
		do    func() []Event
		want  []EventKind
		peers int
	}{
		{"v4 item adds peer", func() []Event { return tb.set(v4, res(ann, "10.0.0.2")) }, []EventKind{PeerAdded}, 1},
		{"same again is quiet", func() []Event { return tb.set(v4, res(ann, "10.0.0.2")) }, nil, 1},
		{"v6 item updates addresses", func() []Event { return tb.set(v6, res(ann, "fe80::1%ebp0")) }, []EventKind{PeerUpdated}, 1},
		{"v4 removed keeps peer", func() []Event { return tb.remove(v4) }, []EventKind{PeerUpdated}, 1},
		{"unknown removal is quiet", func() []Event { return tb.remove(v4) }, nil, 1},
		{"item changes fingerprint", func() []Event {
			return tb.set(v6, res(Announcement{Version: 1, Fingerprint: other, Name: "Bob"}, "fe80::1%ebp0"))
		}, []EventKind{PeerRemoved, PeerAdded}, 1},
		{"same name other key is another peer", func() []Event { return tb.set(v4, res(ann, "10.0.0.2")) }, []EventKind{PeerAdded}, 2},
		{"clear removes all", func() []Event { return tb.clear() }, []EventKind{PeerRemoved, PeerRemoved}, 0},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			got := kinds(st.do())
			if len(got) != len(st.want) {
				t.Fatalf("events %v, want %v", got, st.want)
			}
			for i := range got {
				if got[i] != st.want[i] {
					t.Fatalf("events %v, want %v", got, st.want)
				}
			}
			if n := len(tb.list()); n != st.peers {
				t.Errorf("%d peers, want %d", n, st.peers)
			}
		})
	}

	tb.set(v6, res(ann, "fe80::1%ebp0"))
	tb.set(v4, res(ann, "10.0.0.2"))
	p := tb.list()[0]
	if len(p.Addresses) != 2 || !p.Addresses[0].Is4() {
		t.Errorf("addresses %v, want IPv4 first then IPv6", p.Addresses)
	}
}
