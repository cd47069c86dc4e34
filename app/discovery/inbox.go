package discovery

import "sync"

// inbox is an unbounded queue between the goroutines that drain go-avahi's
// channels and the session loop. put never blocks, so go-avahi's signal
// dispatcher is never held up by a slow consumer.
type inbox struct {
	mu     sync.Mutex
	items  []any
	notify chan struct{}
}

func newInbox() *inbox { return &inbox{notify: make(chan struct{}, 1)} }

func (b *inbox) put(x any) {
	b.mu.Lock()
	b.items = append(b.items, x)
	b.mu.Unlock()
	select {
	case b.notify <- struct{}{}:
	default:
	}
}

func (b *inbox) take() []any {
	b.mu.Lock()
	defer b.mu.Unlock()
	items := b.items
	b.items = nil
	return items
}
