package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Two daemons of one identity on one computer are impossible, whatever
// bus each is on: the second Run fails saying so (with the first one's
// pid), and once the first ended a daemon starts again.
func TestOneDaemonPerIdentity(t *testing.T) {
	a := newTestDaemon(t, Options{})
	opts := a.opts
	opts.Listen = "127.0.0.1:0"
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer b.ln.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	lock := filepath.Join(opts.Dirs.State, lockName)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if pid, _ := os.ReadFile(lock); strings.TrimSpace(string(pid)) == strconv.Itoa(os.Getpid()) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the first daemon never took the lock")
		}
	}
	err = b.Run(t.Context())
	if !errors.Is(err, ErrAlreadyRunning) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(os.Getpid())) {
		t.Fatalf("second daemon of the identity: %v, want %v with the first one's pid", err, ErrAlreadyRunning)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("first daemon: %v", err)
	}
	unlock, err := lockIdentity(opts.Dirs.State)
	if err != nil {
		t.Fatalf("after the first daemon ended: %v", err)
	}
	unlock()
}
