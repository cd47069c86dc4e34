package ui

import (
	"context"
	"sync/atomic"
)

// parker pauses Fyne's event loop while nothing is on screen.
//
// Fyne's GLFW driver wakes 60 times a second to poll X and walk its windows
// for as long as its loop runs, visible windows or not: about a second of
// CPU per idle minute. An app that lives in the tray has nothing to draw most
// of the time, so when no window or popup is open the loop is parked: a
// function queued on the Fyne thread blocks until something needs the screen
// again (an event from the daemon, a tray click), which wakes it at once.
// Work queued meanwhile runs in order after the wake.
//
// While parked, X events for the app's hidden windows wait in the X
// connection; nothing is visible to process them.
type parker struct {
	// wake holds at most one pending wake-up. It is sent on every wake,
	// parked or not, so a wake racing with park is never lost (at worst
	// the next park returns at once and the loop parks again a tick later).
	wake   chan struct{}
	parked atomic.Bool
}

func newParker() *parker { return &parker{wake: make(chan struct{}, 1)} }

// unpark wakes a parked loop (or makes the next park return at once).
func (p *parker) unpark() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// park blocks the calling Fyne thread until unpark or ctx ends.
func (p *parker) park(ctx context.Context) {
	p.parked.Store(true)
	defer p.parked.Store(false)
	select {
	case <-p.wake:
	case <-ctx.Done():
	}
}
