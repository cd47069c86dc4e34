package busrelay

import (
	"context"
	"encoding/binary"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// startBus runs a private dbus-daemon for the test and returns its address.
func startBus(t testing.TB) string { return testenv.PrivateBus(t).Addr }

// startProxy runs xdg-dbus-proxy, as Flatpak does, in front of upstream,
// letting its clients talk to org.example.Echo; returns its address.
func startProxy(t testing.TB, upstream string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "proxy")
	cmd := exec.Command("xdg-dbus-proxy", upstream, path, "--filter", "--talk=org.example.Echo")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if s := stderr.String(); s != "" {
			t.Logf("xdg-dbus-proxy: %s", s)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return "unix:path=" + path
		}
		if time.Now().After(deadline) {
			t.Fatal("xdg-dbus-proxy did not create its socket")
		}
	}
}

type echo struct{}

func (echo) Echo(s string) (string, *dbus.Error) { return s, nil }

// echoService exports org.example.Echo on the bus, answering Echo(s).
func echoService(t testing.TB, addr string) {
	t.Helper()
	conn, err := dbus.Connect(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.Export(echo{}, "/org/example/Echo", "org.example.Echo"); err != nil {
		t.Fatal(err)
	}
	if r, err := conn.RequestName("org.example.Echo", dbus.NameFlagDoNotQueue); err != nil || r != dbus.RequestNameReplyPrimaryOwner {
		t.Fatalf("RequestName: %v %v", r, err)
	}
}

// hammer sends from many goroutines at once, as the tray and the API do:
// signals and method calls, each call checked against its own reply.
func hammer(conn *dbus.Conn) error {
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	obj := conn.Object("org.example.Echo", "/org/example/Echo")
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				conn.Emit("/org/example/Sender", "org.example.Sender.Tick", int32(i))
				want := fmt.Sprintf("%d/%d", g, i)
				var got string
				if err := obj.Call("org.example.Echo.Echo", 0, want).Store(&got); err != nil {
					errs <- fmt.Errorf("call %s: %w", want, err)
					return
				}
				if got != want {
					errs <- fmt.Errorf("reply %q to call %q: replies mixed up", got, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

func TestRelayKeepsSerialsIncreasingThroughXdgDbusProxy(t *testing.T) {
	testenv.RequireTools(t, "dbus-daemon", "xdg-dbus-proxy")
	bus := startBus(t)
	echoService(t, bus)

	t.Run("without the relay", func(t *testing.T) {
		// Not asserted (a race): shows what the relay is for.
		conn, err := dbus.Connect(startProxy(t, bus))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		if err := hammer(conn); err != nil {
			t.Logf("godbus straight through xdg-dbus-proxy: %v", err)
		} else {
			t.Logf("godbus straight through xdg-dbus-proxy: no serial went backwards this time")
		}
	})
	t.Run("through the relay", func(t *testing.T) {
		r, err := Start(t.Context(), startProxy(t, bus), "", slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		for round := range 3 {
			conn, err := dbus.Connect(r.Address())
			if err != nil {
				t.Fatal(err)
			}
			if err := hammer(conn); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			var id string
			if err := conn.BusObject().Call("org.freedesktop.DBus.GetId", 0).Store(&id); err != nil || id == "" {
				t.Fatalf("round %d: the connection does not work after 6,400 messages: %q %v", round, id, err)
			}
			conn.Close()
		}
	})
}

func TestRelayCloseEndsConnections(t *testing.T) {
	testenv.RequireTools(t, "dbus-daemon")
	r, err := Start(context.Background(), startBus(t), "", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := dbus.Connect(r.Address())
	if err != nil {
		t.Fatal(err)
	}
	sock := strings.TrimPrefix(r.Address(), "unix:path=")
	r.Close()
	if err := conn.BusObject().Call("org.freedesktop.DBus.GetId", 0).Err; err == nil {
		t.Error("a relayed connection still works after Close")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("relay socket left behind: %v", err)
	}
}

func TestReplySerialOffset(t *testing.T) {
	for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			msg := dbus.Message{Type: dbus.TypeMethodReply, Headers: map[dbus.HeaderField]dbus.Variant{
				dbus.FieldDestination: dbus.MakeVariant(":1.42"),
				dbus.FieldReplySerial: dbus.MakeVariant(uint32(0xdeadbeef)),
				dbus.FieldSignature:   dbus.MakeVariant(dbus.SignatureOf("a body")),
			}, Body: []any{"a body"}}
			var buf strings.Builder
			if err := msg.EncodeTo(&writer{&buf}, order); err != nil {
				t.Fatal(err)
			}
			b := []byte(buf.String())
			off := replySerialOffset(b, order)
			if off == 0 || order.Uint32(b[off:off+4]) != 0xdeadbeef {
				t.Fatalf("REPLY_SERIAL not found (offset %d) in %x", off, b)
			}
			if got := replySerialOffset(b[:20], order); got != 0 {
				t.Errorf("truncated header: offset %d, want 0", got)
			}
		})
	}
}

type writer struct{ b *strings.Builder }

func (w *writer) Write(p []byte) (int, error) { return w.b.Write(p) }

func TestUnixAddress(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"unix:path=/run/flatpak/bus", "/run/flatpak/bus"},
		{"unix:path=/tmp/with%20space,guid=abc", "/tmp/with space"},
		{"tcp:host=x,port=1;unix:abstract=/tmp/dbus-x", "@/tmp/dbus-x"},
		{"tcp:host=x,port=1", ""},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := unixAddress(tc.in)
			if got != tc.want || (err == nil) != (tc.want != "") {
				t.Errorf("unixAddress(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
			}
		})
	}
}
