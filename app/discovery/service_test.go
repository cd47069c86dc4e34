package discovery

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
)

func TestNewValidates(t *testing.T) {
	dial := func(context.Context) (*dbus.Conn, error) { return nil, errors.New("unused") }
	tests := []struct {
		name string
		opts Options
		ok   bool
	}{
		{"browse only", Options{Dial: dial, Self: Announcement{Fingerprint: testFP}}, true},
		{"publish", Options{Dial: dial, Self: Announcement{Fingerprint: testFP, Name: "Alice"}, Port: 4000}, true},
		{"no dial", Options{Self: Announcement{Fingerprint: testFP}}, false},
		{"no fingerprint", Options{Dial: dial}, false},
		{"bad fingerprint", Options{Dial: dial, Self: Announcement{Fingerprint: "SHA256:x"}}, false},
		{"publish without name", Options{Dial: dial, Self: Announcement{Fingerprint: testFP}, Port: 4000}, false},
		{"publish oversized name", Options{Dial: dial, Self: Announcement{Fingerprint: testFP, Name: strings.Repeat("n", 64)}, Port: 4000}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.opts)
			if (err == nil) != tt.ok {
				t.Fatalf("New err = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestRunBacksOffWhenDialFails(t *testing.T) {
	var dials atomic.Int32
	s, err := New(Options{
		Dial: func(context.Context) (*dbus.Conn, error) {
			dials.Add(1)
			return nil, errors.New("no bus")
		},
		Self:       Announcement{Fingerprint: testFP},
		Logger:     slog.New(slog.DiscardHandler),
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 80 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := s.Run(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, want context.DeadlineExceeded", err)
	}
	// 10+20+40+80+80+... ms: about 8 attempts in 500ms, never a busy loop.
	if n := dials.Load(); n < 3 || n > 12 {
		t.Errorf("%d dial attempts in 500ms, want between 3 and 12", n)
	}
	if len(s.Peers()) != 0 || s.PublishedName() != "" {
		t.Error("a service that never connected has peers or a published name")
	}
}
