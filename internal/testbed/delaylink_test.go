package testbed

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// TestDelayLink: a TCP echo from the requester's namespace to the host's
// through the link takes the round trip set (at least, and not much more),
// and closing the link removes its namespaces and devices.
func TestDelayLink(t *testing.T) {
	for _, rtt := range []time.Duration{0, time.Millisecond, 20 * time.Millisecond} {
		t.Run(rtt.String(), func(t *testing.T) {
			l := NewLink(t, rtt)
			var ln net.Listener
			if err := l.InHost(func() (err error) {
				ln, err = net.Listen("tcp", netip.AddrPortFrom(l.HostIP, 0).String())
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
			// The same address is not reachable from here: only the link
			// joins the two namespaces.
			if c, err := net.DialTimeout("tcp", ln.Addr().String(), 200*time.Millisecond); err == nil {
				c.Close()
				t.Fatalf("%s is reachable from the root namespace", ln.Addr())
			}
			var c net.Conn
			if err := l.InRequester(func() (err error) {
				c, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if got := c.LocalAddr().(*net.TCPAddr).IP.String(); got != l.RequesterIP.String() {
				t.Errorf("the requester's end is %s, want %s", got, l.RequesterIP)
			}
			var trips []time.Duration
			b := []byte{0}
			for i := range 20 {
				c.SetDeadline(time.Now().Add(5 * time.Second))
				start := time.Now()
				b[0] = byte(i)
				if _, err := c.Write(b); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(c, b); err != nil {
					t.Fatal(err)
				}
				trips = append(trips, time.Since(start))
			}
			slices.Sort(trips)
			med := trips[len(trips)/2]
			t.Logf("round trip set %v: measured min %v, median %v, max %v", rtt, trips[0], med, trips[len(trips)-1])
			// Margin: the relay's timers and a loaded 2-core machine.
			if trips[0] < rtt || med > rtt+5*time.Millisecond+rtt/4 {
				t.Errorf("round trip set %v: measured min %v, median %v", rtt, trips[0], med)
			}
			c.Close()
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			for _, ns := range []string{l.Requester, l.Host} {
				if _, err := os.Stat(filepath.Join(netnsDir, ns)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("namespace %s left after Close: %v", ns, err)
				}
			}
			if _, err := os.Stat(l.Dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s left after Close: %v", l.Dir, err)
			}
		})
	}
}
