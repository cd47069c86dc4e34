package ui

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// trayChildEnv runs the test binary as a desktop app's start, for
// TestTrayHostAppearsLate (fyne.io/systray keeps one item per process, so
// each start is a process of its own): the tray item is published, then it
// decides as `ebrainpool gui` does whether a tray host is there (waiting
// up to the value, a duration), prints the decision and keeps the item
// until stdin closes. Checked in init, before the tests run.
const trayChildEnv = "EBP_UI_TEST_TRAY_CHILD"

func init() {
	if wait := os.Getenv(trayChildEnv); wait != "" {
		os.Exit(trayChild(wait))
	}
}

func trayChild(wait string) int {
	d, err := time.ParseDuration(wait)
	if err != nil {
		return 2
	}
	ready := make(chan struct{})
	s := newSystemTray("eBrainPool test", func(f func()) { f() }, func() { close(ready) })
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		fmt.Println("tray item never ready")
		return 1
	}
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		fmt.Println(err)
		return 1
	}
	start := time.Now()
	TrayWait = d
	present := TrayHostPresent(conn) // what `ebrainpool gui` asks before it opens a window
	fmt.Printf("present=%v after=%s\n", present, time.Since(start))
	io.Copy(io.Discard, os.Stdin)
	s.close()
	return 0
}

// fakeWatcher is a tray host's org.kde.StatusNotifierWatcher: it records
// the items that register.
type fakeWatcher struct {
	mu    sync.Mutex
	items []string
	got   chan struct{}
}

func (w *fakeWatcher) RegisterStatusNotifierItem(sender dbus.Sender, service string) *dbus.Error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.items = append(w.items, string(sender)+service)
	if len(w.items) == 1 {
		close(w.got)
	}
	return nil
}

// At login the app can start before the panel's tray host: it waits
// briefly for one before falling back to a window, and its item registers
// whenever a host appears, before or after that fallback.
func TestTrayHostAppearsLate(t *testing.T) {
	tests := []struct {
		name        string
		wait        time.Duration // how long the start waits for a host
		hostAfter   time.Duration // when the host appears
		wantPresent bool          // false: the peer browser opens instead
	}{
		{"a host 1s after the start means no window and the item registered", 3 * time.Second, time.Second, true},
		{"a host after the wait means the window and the item registered later", 500 * time.Millisecond, 1500 * time.Millisecond, false},
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bus := testenv.PrivateBus(t)
			cmd := exec.Command(self, "-test.run=^$")
			cmd.Env = append(os.Environ(), "DBUS_SESSION_BUS_ADDRESS="+bus.Addr, trayChildEnv+"="+tc.wait.String())
			stdin, _ := cmd.StdinPipe()
			out, _ := cmd.StdoutPipe()
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { stdin.Close(); cmd.Wait() }()
			decided := make(chan string, 1)
			go func() {
				line, _ := bufio.NewReader(out).ReadString('\n')
				decided <- strings.TrimSpace(line)
			}()

			time.Sleep(tc.hostAfter)
			conn, err := dbus.Connect(bus.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			w := &fakeWatcher{got: make(chan struct{})}
			if err := conn.Export(w, "/StatusNotifierWatcher", watcherName); err != nil {
				t.Fatal(err)
			}
			if reply, err := conn.RequestName(watcherName, dbus.NameFlagDoNotQueue); err != nil || reply != dbus.RequestNameReplyPrimaryOwner {
				t.Fatalf("owning %s: %v %v", watcherName, reply, err)
			}
			var line string
			select {
			case line = <-decided:
			case <-time.After(10 * time.Second):
				t.Fatal("the start never decided")
			}
			t.Logf("the start: %s", line)
			if want := fmt.Sprintf("present=%v", tc.wantPresent); !strings.HasPrefix(line, want) {
				t.Fatalf("the start decided %q, want %q", line, want)
			}
			if tc.wantPresent {
				took, err := time.ParseDuration(strings.TrimPrefix(line, "present=true after="))
				if err != nil || took < tc.hostAfter/2 || took > tc.wait {
					t.Errorf("decided after %v, want when the host appeared (~%v)", took, tc.hostAfter)
				}
			}
			select {
			case <-w.got:
			case <-time.After(10 * time.Second):
				t.Fatal("the tray item never registered with the host that appeared")
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			if len(w.items) != 1 || !strings.HasSuffix(w.items[0], "/StatusNotifierItem") {
				t.Errorf("registered items %q, want the app's one", w.items)
			}
		})
	}
}
