package control

import (
	"context"
	"testing"
)

// displayHandler records the display mode each launch's requester said.
type displayHandler struct {
	handler
	seen chan DisplayMode
}

func (h *displayHandler) Launch(ctx context.Context, p Peer, app string, progress func(string)) (*Grant, error) {
	h.seen <- p.Display
	return h.handler.Launch(ctx, p, app, progress)
}

// TestLaunchDisplayMode: the host's handler learns how the requester shows
// the app (for its consent prompt); a requester that says nothing (an
// older one) is "", an unknown mode is refused.
func TestLaunchDisplayMode(t *testing.T) {
	h := &displayHandler{seen: make(chan DisplayMode, 1)}
	f := start(t, &h.handler, func(s *Server) { s.Handler = h })
	c := f.dial(t)
	for _, mode := range []DisplayMode{DisplayProtected, DisplayTrusted, ""} {
		t.Run(string(mode), func(t *testing.T) {
			if _, err := c.LaunchOpts(context.Background(), LaunchOptions{App: "xeyes", Display: mode}, nil); err != nil {
				t.Fatal(err)
			}
			if got := <-h.seen; got != mode {
				t.Errorf("host saw display mode %q, want %q", got, mode)
			}
		})
	}
	t.Run("unknown", func(t *testing.T) {
		_, err := c.LaunchOpts(context.Background(), LaunchOptions{App: "xeyes", Display: "sideways"}, nil)
		if !IsRefused(err, CodeBadRequest) {
			t.Fatalf("unknown display mode: %v, want a bad-request refusal", err)
		}
	})
}
