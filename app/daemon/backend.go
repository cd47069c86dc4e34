package daemon

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/user"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ebrainpool/ebrainpool/app/control"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/identity"
	"github.com/ebrainpool/ebrainpool/app/session"
	"github.com/ebrainpool/ebrainpool/sandbox"
	"github.com/ebrainpool/ebrainpool/tunnel"
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
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	apps, err := d.fetchCatalog(ctx, p)
	if err != nil {
		return nil, err
	}
	out := make([]dbusapi.App, 0, len(apps))
	for _, a := range apps {
		out = append(out, dbusapi.App{ID: a.ID, Name: a.Name, Comment: a.Comment, Icon: a.Icon})
	}
	d.noteApps(string(p.Fingerprint), out)
	return out, nil
}

// explain turns errors into sentences a user understands.
func explain(peer string, err error) error {
	var r *control.RefusedError
	var de *tunnel.DisplayError
	switch {
	case errors.As(err, &de):
		return err // our own display: the peer was not involved
	case errors.As(err, &r):
		return fmt.Errorf("%s: %s", peer, r.Reason)
	case errors.Is(err, session.ErrGrantAddress):
		return fmt.Errorf("refused to connect where %s said: %w (a misconfigured or hostile host)", peer, err)
	case errors.Is(err, identity.ErrKeyChanged):
		return fmt.Errorf("refused to talk to %s: its key changed since you first met it; someone may be impersonating it (if %s really reinstalled, forget the peer in Settings)", peer, peer)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s did not answer in time", peer)
	}
	return fmt.Errorf("could not reach %s: %w", peer, err)
}

// failure is explain's sentence with err's Outcome beside it, for the API's
// callers (the command line's exit status).
func failure(peer string, err error) error {
	return &dbusapi.LaunchError{Outcome: outcomeOf(err), Message: explain(peer, err).Error()}
}

// outcomeOf is the Outcome of a launch that failed with err.
func outcomeOf(err error) dbusapi.Outcome {
	var r *control.RefusedError
	var de *tunnel.DisplayError
	switch {
	case errors.Is(err, tunnel.ErrNoSecurityExtension):
		return dbusapi.OutcomeUnprotectedDisplay
	case errors.As(err, &de):
		return dbusapi.OutcomeNoDisplay
	case errors.As(err, &r):
		return refusalOutcome(r.Code)
	case errors.Is(err, context.Canceled):
		return dbusapi.OutcomeEnded
	case errors.Is(err, identity.ErrKeyChanged), errors.Is(err, identity.ErrFingerprintMismatch),
		errors.Is(err, context.DeadlineExceeded):
		return dbusapi.OutcomeUnreachable
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return dbusapi.OutcomeUnreachable
	}
	return dbusapi.OutcomeFailed
}

// refusalOutcome is the Outcome of a refusal code from the host.
func refusalOutcome(code control.Code) dbusapi.Outcome {
	switch code {
	case control.CodeDenied:
		return dbusapi.OutcomeDenied
	case control.CodeTimeout:
		return dbusapi.OutcomeNoAnswer
	case control.CodeBlocked:
		return dbusapi.OutcomeBlocked
	case control.CodeBusy, control.CodeRateLimited:
		return dbusapi.OutcomeRateLimited
	case control.CodeNoSuchApp:
		return dbusapi.OutcomeNotShared
	case control.CodeCanceled:
		return dbusapi.OutcomeEnded
	case control.CodeShuttingDown:
		return dbusapi.OutcomeUnreachable
	case control.CodeSharingOff:
		return dbusapi.OutcomeSharingOff
	case control.CodeSetupMissing:
		return dbusapi.OutcomeSetupMissing
	case control.CodeNoLimits:
		return dbusapi.OutcomeNoLimits
	case control.CodeSandboxFailed:
		return dbusapi.OutcomeSandboxFailed
	case control.CodeEnded:
		return dbusapi.OutcomeEndedByHost
	}
	return dbusapi.OutcomeFailed
}

// Launch starts running app from peer in the background and returns its id;
// LaunchProgress and LaunchFinished signals follow.
func (d *Daemon) Launch(peer, app string) (string, error) {
	return d.launch(peer, app, nil, nil)
}

func (d *Daemon) launch(peer, app string, files []string, folders []session.Folder) (string, error) {
	p, err := d.Resolve(peer)
	if err != nil {
		return "", err
	}
	t, err := d.target(p)
	if err != nil {
		return "", err
	}
	d.mu.Lock()
	if d.launches.ctx == nil {
		d.mu.Unlock()
		return "", errors.New("eBrainPool is not running (starting or shutting down)")
	}
	// On Run's context: the launch ends when Run does, and Run waits for it.
	ctx, cancel := context.WithCancel(d.launches.ctx)
	o := &outgoing{id: newID(), peer: string(p.Fingerprint), peerName: p.Name, app: app, since: time.Now(), state: dbusapi.StageAsking, cancel: cancel,
		files: fileNames(files, folders)}
	d.outgoing[o.id] = o
	d.launches.running.Add(1)
	d.mu.Unlock()
	mode := d.effectiveDisplayMode(string(p.Fingerprint), app)
	progress := func(stage dbusapi.Stage) {
		d.mu.Lock()
		o.state = stage
		d.mu.Unlock()
		d.publish(Event{Kind: EventLaunchProgress, Launch: o.id, Stage: stage})
	}
	go func() {
		defer d.launches.running.Done()
		defer cancel()
		code, err := session.Run(ctx, t, app, session.RunConfig{
			Identity: d.id.Signer(), Name: d.Settings().DisplayName, Verify: d.verify(p),
			Display: d.opts.Display, XAuthority: d.opts.XAuthority, Progress: progress,
			Granted: func(session string) { d.mu.Lock(); o.session = session; d.mu.Unlock() },
			Stdout:  logWriter{d.log, o.id, "stdout"}, Stderr: logWriter{d.log, o.id, "stderr"}, Logger: d.log,
			ClientProcess: d.opts.ClientProcess, Files: files, Folders: folders,
			TrustedDisplay: mode == dbusapi.DisplayTrusted, IsolatedDisplay: mode == dbusapi.DisplayIsolated,
		})
		d.mu.Lock()
		delete(d.outgoing, o.id)
		endedHere := o.endedHere
		d.mu.Unlock()
		msg, outcome := "", dbusapi.OutcomeExited
		switch {
		case endedHere != "" && (err != nil || ctx.Err() != nil):
			msg, outcome, code = endedHere, dbusapi.OutcomeEnded, -1
		case err != nil:
			msg = explain(p.Name, err).Error()
			outcome = outcomeOf(err)
			code = -1
		}
		d.log.Info("launch finished", "id", o.id, "peer", p.Name, "app", app, "status", code, "outcome", outcome, "err", msg)
		d.publish(Event{Kind: EventLaunchFinished, Launch: o.id, Exit: code, Err: msg, Outcome: outcome})
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
		out = append(out, incomingSession(s))
	}
	d.mu.Lock()
	for _, o := range d.outgoing {
		out = append(out, dbusapi.Session{ID: o.id, Direction: dbusapi.DirectionOutgoing, Peer: o.peer, PeerName: o.peerName, App: o.app, Since: o.since.Unix(), State: o.state, Session: o.session, Files: o.files})
	}
	d.mu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].Since < out[j].Since })
	return out
}

// EndSession ends an incoming or outgoing session.
func (d *Daemon) EndSession(id string) error {
	d.mu.Lock()
	o := d.outgoing[id]
	if o != nil {
		o.endedHere = "the session was ended here"
	}
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

// Setting up sharing from the app (the GUI's "Set up sharing…", the D-Bus
// SetUpSharing): the one-time root setup through polkit, then a new
// sandbox manager swapped in without a restart.

// Why SetUpSharing failed, when pkexec says so.
var (
	// ErrSetupCancelled is pkexec's exit status 126: the user dismissed
	// the authentication dialog, or is not allowed to authenticate.
	ErrSetupCancelled = errors.New("setup was cancelled or not authorized")
	// ErrSetupAuth is pkexec's exit status 127.
	ErrSetupAuth = errors.New("authentication failed, or pkexec could not run the setup")
)

// sharingState is what RetrySharing needs from Run (guarded by Daemon.mu):
// the context managers are warmed in while Run serves, and whether Run
// has ended (a manager made later would never be closed).
type sharingState struct {
	setup   sync.Mutex // one SetUpSharing or RetrySharing at a time (not under mu)
	warmCtx context.Context
	stop    context.CancelFunc
	warming sync.WaitGroup
	ended   bool
}

// CanSetUpSharing reports whether SetUpSharing could make sharing
// available: only the one-time setup is missing (not the Flatpak, not a
// host that cannot limit sandboxes, not liblxc).
func (d *Daemon) CanSetUpSharing() bool {
	return !d.opts.InFlatpak && errors.Is(d.SandboxError(), sandbox.ErrNotSetUp)
}

// SetUpSharing runs the one-time setup for the current user through
// polkit (`pkexec EXE setup --user NAME`, asking for an administrator's
// password) and then makes sharing available without a restart (see
// RetrySharing). It returns nil at once when sharing is available,
// ErrFlatpak in a Flatpak, and the cause unchanged when it is not missing
// setup (setup would not fix it).
func (d *Daemon) SetUpSharing(ctx context.Context) error {
	d.sharing.setup.Lock()
	defer d.sharing.setup.Unlock()
	if d.opts.InFlatpak {
		return ErrFlatpak
	}
	cause := d.SandboxError()
	if cause == nil {
		return nil
	}
	if !errors.Is(cause, sandbox.ErrNotSetUp) {
		return cause
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the ebrainpool program to set up sharing: %w", err)
	}
	u, err := user.Current()
	if err != nil {
		return fmt.Errorf("looking up the current user: %w", err)
	}
	argv := []string{"pkexec", exe, "setup", "--user", u.Username}
	d.log.Info("setting up sharing", "command", strings.Join(argv, " "))
	out, err := d.opts.Elevate(ctx, argv)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("setting up sharing: %w", ctx.Err())
		}
		err = setupError(u.Username, out, err)
		d.log.Warn("setting up sharing failed", "err", err, "output", string(out))
		return err
	}
	d.log.Info("setup done", "output", string(out))
	if err := d.retrySharing(); err != nil {
		return fmt.Errorf("the setup finished, but sharing is still not available: %w", err)
	}
	return nil
}

// runElevated is the default Options.Elevate.
func runElevated(ctx context.Context, argv []string) ([]byte, error) {
	return exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
}

// setupError says why pkexec EXE setup failed.
func setupError(user string, out []byte, err error) error {
	var st interface{ ExitCode() int }
	code := -1
	if errors.As(err, &st) {
		code = st.ExitCode()
	}
	switch {
	case errors.Is(err, exec.ErrNotFound):
		return fmt.Errorf("setting up sharing needs pkexec, which is not installed: install the pkexec package, or run `sudo ebrainpool setup --user %s` in a terminal", user)
	case code == 126:
		return ErrSetupCancelled
	case code == 127:
		if said := lastLines(out, 3); said != "" {
			return fmt.Errorf("%w (pkexec: %s)", ErrSetupAuth, said)
		}
		return ErrSetupAuth
	case code > 0:
		// Setup's own error: the CLI prints it last, as "ebrainpool setup: ...".
		s := strings.TrimSpace(string(out))
		if i := strings.LastIndex(s, "ebrainpool setup: "); i >= 0 {
			s = strings.TrimSpace(s[i+len("ebrainpool setup: "):])
		} else {
			s = lastLines(out, 5)
		}
		if s == "" {
			return fmt.Errorf("the setup failed (exit status %d) without saying why", code)
		}
		if len(s) > 2000 {
			s = s[:2000] + "…"
		}
		return fmt.Errorf("the setup failed: %s", s)
	}
	return fmt.Errorf("running the setup through pkexec: %w", err)
}

// lastLines is the last n non-empty lines of out, joined by "; ".
func lastLines(out []byte, n int) string {
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}

// RetrySharing makes a sandbox manager again, with the configuration New
// used, and on success swaps it in everywhere (the host's sessions, the
// sandbox list, what peers are told): sharing becomes available without a
// restart. On failure the new cause replaces the old one (after setup, a
// host may turn out unable to limit sandboxes). Either way an
// EventSharingChanged follows. It does nothing when sharing is available.
func (d *Daemon) RetrySharing() error {
	d.sharing.setup.Lock()
	defer d.sharing.setup.Unlock()
	return d.retrySharing()
}

func (d *Daemon) retrySharing() error {
	if d.opts.InFlatpak {
		return ErrFlatpak
	}
	if d.SandboxError() == nil {
		return nil
	}
	d.mu.Lock()
	cfg := d.sbCfg
	d.mu.Unlock()
	m, err := sandbox.NewManager(cfg)
	if err != nil {
		d.mu.Lock()
		d.sbErr = err
		d.mu.Unlock()
		d.host.SetSandboxes(noSandbox{err})
		d.log.Warn("still not sharing apps", "err", err)
		d.publish(Event{Kind: EventSharingChanged, Err: err.Error()})
		return err
	}
	d.mu.Lock()
	if d.sharing.ended {
		d.mu.Unlock()
		m.Close()
		return errors.New("eBrainPool is shutting down")
	}
	d.sandbox, d.sbErr = m, nil
	d.warmLocked(m)
	lim := d.sbCfg.Limits // SaveSettings may have changed them meanwhile
	d.mu.Unlock()
	if err := m.SetLimits(lim); err != nil {
		d.log.Warn("sandbox limits", "err", err)
	}
	d.host.SetSandboxes(m)
	d.log.Info("sharing apps: the sandboxes are available now")
	d.publish(Event{Kind: EventSharingChanged})
	return nil
}

// warmSandboxes starts warming the current manager (Run calls it) and
// lets RetrySharing warm the managers it swaps in.
func (d *Daemon) warmSandboxes(ctx context.Context) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sharing.warmCtx, d.sharing.stop = context.WithCancel(ctx)
	if d.sandbox != nil {
		d.warmLocked(d.sandbox)
	}
}

// warmLocked prepares m in the background once Run serves (d.mu held).
func (d *Daemon) warmLocked(m *sandbox.Manager) {
	ctx := d.sharing.warmCtx
	if ctx == nil || d.sharing.ended {
		return // Run warms it when it starts
	}
	d.sharing.warming.Add(1)
	go func() {
		defer d.sharing.warming.Done()
		if err := m.Warm(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("preparing sandboxes", "err", err)
		}
	}()
}

// closeSandboxes stops warming and closes the current manager (Run's end).
func (d *Daemon) closeSandboxes() {
	d.mu.Lock()
	d.sharing.ended = true
	stop, m := d.sharing.stop, d.sandbox
	d.mu.Unlock()
	if stop != nil {
		stop()
	}
	d.sharing.warming.Wait()
	if m != nil {
		m.Close()
	}
}
