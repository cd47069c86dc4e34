// Package systemd talks to the calling user's systemd manager (the
// `systemd --user` instance of user@UID.service) over D-Bus, for the one
// thing eBrainPool needs from it: transient scope units that hold given
// processes, optionally with their cgroup delegated to the user.
//
// It dials the manager's private socket ($XDG_RUNTIME_DIR/systemd/private,
// what `systemctl --user` uses), so it works even where the process's
// session bus is not the user bus (dbus-run-session, test beds), and falls
// back to the user bus ($XDG_RUNTIME_DIR/bus).
package systemd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/godbus/dbus/v5"
)

const (
	dest    = "org.freedesktop.systemd1"
	path    = dbus.ObjectPath("/org/freedesktop/systemd1")
	manager = "org.freedesktop.systemd1.Manager"
)

// ErrNoUserManager means the user has no running systemd user manager to
// ask (no login session and no linger), or it could not be reached.
var ErrNoUserManager = errors.New("no systemd user manager is running for this user")

// RuntimeDir is the user's XDG runtime directory: $XDG_RUNTIME_DIR, else
// /run/user/UID (what pam_systemd sets), for the calling user.
func RuntimeDir() string {
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return d
	}
	return filepath.Join("/run/user", strconv.Itoa(os.Getuid()))
}

// Manager is a connection to the user's systemd manager.
type Manager struct {
	conn    *dbus.Conn
	signals chan *dbus.Signal
}

// DialUser connects to the calling user's systemd manager.
func DialUser(ctx context.Context) (*Manager, error) {
	dir := RuntimeDir()
	var errs []error
	for _, try := range []struct {
		addr  string
		hello bool // a bus (not the manager's peer-to-peer socket) needs Hello
	}{
		{"unix:path=" + filepath.Join(dir, "systemd", "private"), false},
		{"unix:path=" + filepath.Join(dir, "bus"), true},
	} {
		m, err := dial(ctx, try.addr, try.hello)
		if err == nil {
			return m, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("%w (%v)", ErrNoUserManager, errors.Join(errs...))
}

func dial(ctx context.Context, addr string, hello bool) (*Manager, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// Not dbus.WithContext: that would close the connection when ctx ends.
	conn, err := dbus.Dial(addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	// The handshake gets the same deadline as the calls.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	err = conn.Auth(nil)
	if err == nil && hello {
		err = conn.Hello()
	}
	if !stop() || err != nil {
		conn.Close()
		if err == nil {
			err = ctx.Err()
		}
		return nil, fmt.Errorf("authenticating on %s: %w", addr, err)
	}
	if hello {
		if err := conn.AddMatchSignalContext(ctx, dbus.WithMatchInterface(manager), dbus.WithMatchMember("JobRemoved")); err != nil {
			conn.Close()
			return nil, fmt.Errorf("subscribing to job results on %s: %w", addr, err)
		}
	}
	m := &Manager{conn: conn, signals: make(chan *dbus.Signal, 256)}
	conn.Signal(m.signals)
	// Without Subscribe the manager sends no JobRemoved signals.
	if err := m.obj().CallWithContext(ctx, manager+".Subscribe", 0).Err; err != nil {
		conn.Close()
		return nil, fmt.Errorf("subscribing to the systemd user manager on %s: %w", addr, err)
	}
	return m, nil
}

func (m *Manager) obj() dbus.BusObject { return m.conn.Object(dest, path) }

// Close closes the connection.
func (m *Manager) Close() error { return m.conn.Close() }

// Scope is a transient scope unit to create.
type Scope struct {
	Name        string   // e.g. "ebrainpool-sandboxes-1234.scope"
	Slice       string   // e.g. "app-ebrainpool.slice"; empty: the manager's default
	Description string   // shown by systemctl --user status
	PIDs        []uint32 // the processes moved into it (at least one)
	// Delegate hands the scope's cgroup subtree to the user: its processes
	// may create child cgroups and enable controllers (cpu, memory, pids)
	// in them.
	Delegate bool
}

// StartScope creates the scope and waits until systemd has moved the
// processes into it.
func (m *Manager) StartScope(ctx context.Context, s Scope) error {
	if len(s.PIDs) == 0 {
		return fmt.Errorf("scope %s: no processes", s.Name)
	}
	props := []struct {
		Name  string
		Value dbus.Variant
	}{
		{"Description", dbus.MakeVariant(s.Description)},
		{"PIDs", dbus.MakeVariant(s.PIDs)},
		// A failed scope is forgotten instead of blocking its name.
		{"CollectMode", dbus.MakeVariant("inactive-or-failed")},
	}
	if s.Slice != "" {
		props = append(props, struct {
			Name  string
			Value dbus.Variant
		}{"Slice", dbus.MakeVariant(s.Slice)})
	}
	if s.Delegate {
		props = append(props, struct {
			Name  string
			Value dbus.Variant
		}{"Delegate", dbus.MakeVariant(true)})
	}
	aux := []struct {
		Name  string
		Props []struct {
			Name  string
			Value dbus.Variant
		}
	}{}
	var job dbus.ObjectPath
	call := m.obj().CallWithContext(ctx, manager+".StartTransientUnit", 0, s.Name, "fail", props, aux)
	if call.Err != nil {
		return fmt.Errorf("asking the systemd user manager for scope %s: %w", s.Name, call.Err)
	}
	if err := call.Store(&job); err != nil {
		return fmt.Errorf("asking the systemd user manager for scope %s: %w", s.Name, err)
	}
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for scope %s: %w", s.Name, ctx.Err())
		case sig, ok := <-m.signals:
			if !ok {
				return fmt.Errorf("waiting for scope %s: the connection to the systemd user manager closed", s.Name)
			}
			// JobRemoved(u id, o job, s unit, s result)
			if sig.Name != manager+".JobRemoved" || len(sig.Body) != 4 {
				continue
			}
			if p, _ := sig.Body[1].(dbus.ObjectPath); p != job {
				continue
			}
			if result, _ := sig.Body[3].(string); result != "done" {
				return fmt.Errorf("the systemd user manager could not start scope %s: job %s", s.Name, result)
			}
			return nil
		}
	}
}
