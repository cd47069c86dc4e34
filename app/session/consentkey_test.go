package session

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/app/catalog"
	"github.com/ebrainpool/ebrainpool/app/consent"
	"github.com/ebrainpool/ebrainpool/app/control"
	"github.com/ebrainpool/ebrainpool/app/identity"
	"golang.org/x/crypto/ssh"
)

// The host asks consent about the app by its desktop ID and command: a
// remembered allow for one app does not let another app with the same
// name run, nor the same app once its command changed.
func TestRememberedAllowIsForTheAppNotItsName(t *testing.T) {
	fast := consent.Rate{Burst: 100, Every: time.Millisecond}
	engine, err := consent.New(consent.Config{PerPeer: fast, Overall: fast, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(engine.Close)
	var mu sync.Mutex
	apps := []catalog.App{
		{ID: "a.desktop", Name: "Shared", Exec: []string{"true"}},
		{ID: "b.desktop", Name: "Shared", Exec: []string{"true", "b"}},
	}
	h := NewHost(HostConfig{
		Sandboxes: newFakeSandboxes(t), Consent: engine,
		Apps:     func() []catalog.App { mu.Lock(); defer mu.Unlock(); return append([]catalog.App(nil), apps...) },
		IdleStop: time.Minute, ForwardIdle: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	t.Cleanup(h.Close)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	lo := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	peer := control.Peer{Fingerprint: identity.FingerprintOf(signer.PublicKey()), Key: signer.PublicKey(), Name: "alice", Addr: lo, LocalAddr: lo}

	// launch runs a launch of id; if a prompt appears it checks what the
	// prompt is about and answers it with a. It reports whether the launch
	// was granted and whether it prompted.
	launch := func(id, wantCommand string, a consent.Answer) (granted, prompted bool) {
		t.Helper()
		errc := make(chan error, 1)
		go func() {
			_, err := h.Launch(context.Background(), peer, id, func(string) {})
			errc <- err
		}()
		deadline := time.After(5 * time.Second)
		for {
			select {
			case err := <-errc:
				return err == nil, prompted
			case <-deadline:
				t.Fatalf("launch of %s did not end", id)
			case <-time.After(2 * time.Millisecond):
			}
			if prompted {
				continue
			}
			for _, r := range engine.Pending() {
				if r.App != "Shared" || r.AppID != id || r.Command != wantCommand {
					t.Fatalf("prompt %+v, want app Shared, ID %s, command %q", r, id, wantCommand)
				}
				if err := engine.Answer(r.ID, a); err != nil {
					t.Fatal(err)
				}
				prompted = true
			}
		}
	}

	if granted, prompted := launch("a.desktop", "true", consent.Answer{Allow: true, Remember: true}); !granted || !prompted {
		t.Fatalf("A, allowed and remembered: granted %v, prompted %v", granted, prompted)
	}
	if granted, prompted := launch("a.desktop", "true", consent.Answer{}); !granted || prompted {
		t.Fatalf("A again: granted %v, prompted %v (want the remembered allow)", granted, prompted)
	}
	if granted, prompted := launch("b.desktop", "true b", consent.Answer{}); granted || !prompted {
		t.Fatalf("B, named as A: granted %v, prompted %v (want a prompt)", granted, prompted)
	}
	mu.Lock()
	apps[0].Exec = []string{"true", "--changed"}
	mu.Unlock()
	if granted, prompted := launch("a.desktop", "true --changed", consent.Answer{}); granted || !prompted {
		t.Fatalf("A with a changed command: granted %v, prompted %v (want a prompt)", granted, prompted)
	}
}
