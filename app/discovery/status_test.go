package discovery

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// Discovery says when it is off and why: no system bus, or a bus without
// avahi-daemon (a real dbus-daemon of the test's own).
func TestStatusSaysWhyDiscoveryIsOff(t *testing.T) {
	bus := testenv.PrivateBus(t)
	for _, tc := range []struct {
		name string
		dial DialFunc
		want State
	}{
		{"no system bus", func(context.Context) (*dbus.Conn, error) {
			return nil, errors.New("dial unix /run/dbus/system_bus_socket: connect: no such file or directory")
		}, StateNoSystemBus},
		{"no avahi-daemon", func(ctx context.Context) (*dbus.Conn, error) {
			return dbus.Connect(bus.Addr, dbus.WithContext(ctx))
		}, StateNoAvahi},
	} {
		t.Run(tc.name, func(t *testing.T) {
			told := make(chan Status, 16)
			s, err := New(Options{Dial: tc.dial, Self: Announcement{Fingerprint: testFP}, OnStatus: func(st Status) { told <- st }, MinBackoff: 10 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			if st := s.Status(); st.State != StateStarting {
				t.Errorf("before Run: %+v", st)
			}
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan struct{})
			go func() { s.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			select {
			case st := <-told:
				if st.State != tc.want || st.Err == "" {
					t.Errorf("told %+v, want %s with the error", st, tc.want)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("not told why discovery is off")
			}
			if st := s.Status(); st.State != tc.want {
				t.Errorf("Status() = %+v, want %s", st, tc.want)
			}
		})
	}
}
