package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/ebrainpool/ebrainpool/app/control"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/identity"
	"github.com/ebrainpool/ebrainpool/app/session"
)

var _ dbusapi.Backend = (*Daemon)(nil)

// Peers lists the known peers with their trust state.
func (d *Daemon) Peers() []dbusapi.Peer {
	var out []dbusapi.Peer
	for _, p := range d.peers() {
		out = append(out, d.describe(p))
	}
	return out
}

// Apps asks a peer for the apps it shares.
func (d *Daemon) Apps(ctx context.Context, peer string) ([]dbusapi.App, error) {
	p, err := d.Resolve(peer)
	if err != nil {
		return nil, err
	}
	t, err := d.target(p)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c, err := control.Dial(ctx, t.Addr, control.ClientConfig{Identity: d.id.Signer(), Name: d.Settings().DisplayName, Expect: t.Fingerprint, Verify: d.verify(p)})
	if err != nil {
		return nil, explain(p.Name, err)
	}
	defer c.Close()
	apps, err := c.Catalog(ctx)
	if err != nil {
		return nil, explain(p.Name, err)
	}
	out := make([]dbusapi.App, 0, len(apps))
	for _, a := range apps {
		out = append(out, dbusapi.App{ID: a.ID, Name: a.Name, Comment: a.Comment, Icon: a.Icon})
	}
	return out, nil
}

// explain turns errors into sentences a user understands.
func explain(peer string, err error) error {
	var r *control.RefusedError
	switch {
	case errors.As(err, &r):
		return fmt.Errorf("%s: %s", peer, r.Reason)
	case errors.Is(err, identity.ErrKeyChanged):
		return fmt.Errorf("refused to talk to %s: its key changed since you first met it; someone may be impersonating it (if %s really reinstalled, forget the peer in Settings)", peer, peer)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s did not answer in time", peer)
	}
	return fmt.Errorf("could not reach %s: %w", peer, err)
}

// Launch starts running app from peer in the background and returns its id;
// LaunchProgress and LaunchFinished signals follow.
func (d *Daemon) Launch(peer, app string) (string, error) {
	p, err := d.Resolve(peer)
	if err != nil {
		return "", err
	}
	t, err := d.target(p)
	if err != nil {
		return "", err
	}
	ctx, cancel := context.WithCancel(context.Background())
	o := &outgoing{id: newID(), peer: string(p.Fingerprint), peerName: p.Name, app: app, since: time.Now(), state: session.StageAsking, cancel: cancel}
	d.mu.Lock()
	d.outgoing[o.id] = o
	d.mu.Unlock()
	progress := func(stage string) {
		d.mu.Lock()
		o.state = stage
		d.mu.Unlock()
		d.publish(Event{Kind: EventLaunchProgress, Launch: o.id, Stage: stage})
	}
	go func() {
		defer cancel()
		code, err := session.Run(ctx, t, app, session.RunConfig{
			Identity: d.id.Signer(), Name: d.Settings().DisplayName, Verify: d.verify(p),
			Display: d.opts.Display, XAuthority: d.opts.XAuthority, Progress: progress,
			Stdout: logWriter{d.log, o.id, "stdout"}, Stderr: logWriter{d.log, o.id, "stderr"}, Logger: d.log,
			ClientProcess: d.opts.ClientProcess,
		})
		d.mu.Lock()
		delete(d.outgoing, o.id)
		d.mu.Unlock()
		msg := ""
		if err != nil {
			msg = explain(p.Name, err).Error()
			code = -1
		}
		d.log.Info("launch finished", "id", o.id, "peer", p.Name, "app", app, "status", code, "err", msg)
		d.publish(Event{Kind: EventLaunchFinished, Launch: o.id, Exit: code, Err: msg})
	}()
	return o.id, nil
}

// Pending lists the consent prompts on this host.
func (d *Daemon) Pending() []dbusapi.Request {
	var out []dbusapi.Request
	for _, r := range d.consent.Pending() {
		out = append(out, apiRequest(r))
	}
	return out
}

// Answer answers a consent prompt.
func (d *Daemon) Answer(id string, allow, remember bool) error {
	return d.AnswerFull(id, allow, remember, false)
}

// Block blocks a peer, given as for Resolve or as the fingerprint of a
// pending request's peer.
func (d *Daemon) Block(peer string) error {
	for _, r := range d.consent.Pending() {
		if r.Peer == peer || r.ID == peer {
			return d.consent.Block(r.Peer, r.PeerName)
		}
	}
	p, err := d.Resolve(peer)
	if err != nil {
		return err
	}
	return d.consent.Block(string(p.Fingerprint), p.Name)
}

// Sessions lists incoming (peers' apps here) and outgoing sessions.
func (d *Daemon) Sessions() []dbusapi.Session {
	var out []dbusapi.Session
	for _, s := range d.host.Sessions() {
		state := "granted"
		if s.Connected {
			state = "running"
		}
		out = append(out, dbusapi.Session{ID: s.ID, Direction: "incoming", Peer: s.Peer, PeerName: s.PeerName, App: s.AppName, Since: s.Since.Unix(), State: state})
	}
	d.mu.Lock()
	for _, o := range d.outgoing {
		out = append(out, dbusapi.Session{ID: o.id, Direction: "outgoing", Peer: o.peer, PeerName: o.peerName, App: o.app, Since: o.since.Unix(), State: o.state})
	}
	d.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Since < out[j].Since })
	return out
}

// EndSession ends an incoming or outgoing session.
func (d *Daemon) EndSession(id string) error {
	d.mu.Lock()
	o := d.outgoing[id]
	d.mu.Unlock()
	if o != nil {
		o.cancel()
		return nil
	}
	return d.host.EndSession(id)
}

// logWriter puts a remote app's output in the daemon's log, line by line
// (bounded: one write is at most one log record of 4 KiB).
type logWriter struct {
	log    *slog.Logger
	launch string
	stream string
}

func (w logWriter) Write(b []byte) (int, error) {
	n := len(b)
	if len(b) > 4096 {
		b = b[:4096]
	}
	for _, line := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		w.log.Info("app output", "launch", w.launch, "stream", w.stream, "line", line)
	}
	return n, nil
}

func newID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
