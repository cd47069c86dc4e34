package session

import (
	"testing"
	"time"
)

// Sandboxes a killed daemon left running get the idle stop, and a launch
// for one of them cancels it as for any other.
func TestAdoptSchedulesIdleStops(t *testing.T) {
	sb := newFakeSandboxes(t)
	h := NewHost(HostConfig{Sandboxes: sb, IdleStop: time.Minute})
	defer h.Close()
	h.Adopt([]string{"SHA256:a", "SHA256:b"})
	got := map[string]bool{}
	for i := 0; i < 2; i++ {
		select {
		case p := <-sb.idleC:
			got[p] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("idle stops scheduled for %v, want both adopted sandboxes", got)
		}
	}
	if !got["SHA256:a"] || !got["SHA256:b"] {
		t.Errorf("idle stops for %v", got)
	}
	h.preparingPeer("SHA256:a", +1) // a launch for it
	h.mu.Lock()
	_, pending := h.stoppers["SHA256:a"]
	h.mu.Unlock()
	if pending {
		t.Error("a launch did not cancel the adopted sandbox's idle stop")
	}
	h.preparingPeer("SHA256:a", -1)
}

// With idle stops off (the setting at 0), nothing adopted is stopped.
func TestAdoptWithIdleStopOff(t *testing.T) {
	sb := newFakeSandboxes(t)
	h := NewHost(HostConfig{Sandboxes: sb, IdleStop: -1})
	defer h.Close()
	h.Adopt([]string{"SHA256:a"})
	select {
	case p := <-sb.idleC:
		t.Errorf("idle stop scheduled for %s with idle stops off", p)
	case <-time.After(300 * time.Millisecond):
	}
}
