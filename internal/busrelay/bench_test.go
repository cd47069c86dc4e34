package busrelay

import (
	"log/slog"
	"testing"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// BenchmarkEchoCall is one method call and its reply to another
// connection, through xdg-dbus-proxy as in a Flatpak: straight (the
// anchor) and through the relay. One caller at a time, so the straight
// path keeps its serials in order.
func BenchmarkEchoCall(b *testing.B) {
	testenv.RequireTools(b, "dbus-daemon", "xdg-dbus-proxy")
	bus := startBus(b)
	echoService(b, bus)
	proxy := startProxy(b, bus)
	r, err := Start(b.Context(), proxy, "", slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	for _, bc := range []struct{ name, addr string }{{"proxy", proxy}, {"relay+proxy", r.Address()}} {
		b.Run(bc.name, func(b *testing.B) {
			conn, err := dbus.Connect(bc.addr)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			obj := conn.Object("org.example.Echo", "/org/example/Echo")
			for b.Loop() {
				var s string
				if err := obj.Call("org.example.Echo.Echo", 0, "ping").Store(&s); err != nil || s != "ping" {
					b.Fatalf("%q %v", s, err)
				}
			}
		})
	}
}
