package discovery_test

import (
	"context"
	"log"
	"path/filepath"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/app/discovery"
	"github.com/ebrainpool/ebrainpool/app/identity"
)

// The app announces itself with its identity fingerprint and control port
// and follows its peers; the peer list is also available at any time
// through Peers.
func ExampleService() {
	ctx := context.Background()
	id, err := identity.LoadOrCreate(filepath.Join("/home/alice/.local/share/ebrainpool", "id_ed25519"), "alice")
	if err != nil {
		log.Fatal(err)
	}
	svc, err := discovery.New(discovery.Options{
		Dial: func(context.Context) (*dbus.Conn, error) { return dbus.ConnectSystemBus() },
		Self: discovery.Announcement{Fingerprint: id.Fingerprint(), Name: "Alice"},
		Port: 7447,
		OnEvent: func(ev discovery.Event) {
			log.Printf("peer %s: %s", ev.Kind, ev.Peer)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	go func() { _ = svc.Run(ctx) }()
}
