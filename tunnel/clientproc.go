package tunnel

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

// The client process (RunAppProcess / ClientProcessMain) receives these
// descriptors besides stdin, stdout and stderr (which are the app's).
const (
	// fdClientSpec carries the JSON clientSpec; the parent keeps it open for
	// the session's lifetime and closes it to end the session (so the
	// session also ends if the parent dies).
	fdClientSpec = 3
	// fdClientAgent is one end of a socket pair on which the parent serves
	// an SSH agent holding only the identity key: the private key never
	// enters the client process, and the child closes it once
	// authenticated.
	fdClientAgent = 4
	// fdClientStatus receives JSON lines: slog records and status messages.
	fdClientStatus = 5
)

// maxStatusLine bounds one line the parent reads from a client process.
const maxStatusLine = 64 << 10

// clientSpec is the ClientConfig as it is handed to a client process.
type clientSpec struct {
	Addr             string
	HostKey          string // authorized_keys line
	User             string
	Command          string
	NoX11            bool
	TrustedDisplay   bool `json:",omitempty"`
	IsolatedDisplay  bool `json:",omitempty"`
	Display          string
	XAuthority       string
	HasStdin         bool
	HandshakeTimeout time.Duration
	MaxX11Conns      int
	Shares           []Share `json:",omitempty"`
}

// clientStatus is a status line of a client process; log records are the
// other lines.
type clientStatus struct {
	Status string `json:"ebrainpool_client"` // "started" or "exit"
	Code   int    `json:"code,omitempty"`
	Error  string `json:"error,omitempty"`
	// Display says Error is about the requester's own display (a
	// DisplayError), which the caller must not blame on the peer.
	Display bool `json:"display,omitempty"`
}

// ClientProcess is how RunAppProcess starts a client process: a program
// that calls ClientProcessMain (for `ebrainpool`, its hidden x11-client
// subcommand).
type ClientProcess struct {
	Path string
	Args []string // argv[1:]
	Env  []string // nil: inherit
}

// RunAppProcess is RunApp in a separate process started from p, which
// calls ClientProcessMain. The X11 data path then runs in a process tuned
// for it (TuneRelayProcess: one P, so relaying a packet hands it from
// goroutine to goroutine without waking other threads), whatever else the
// calling process does. The identity key stays in this process: the child
// signs through an SSH agent served here on a private socket pair, for the
// authentication only. Stdio, Started, the exit status and the log behave
// as with RunApp; cancelling ctx ends the session.
func RunAppProcess(ctx context.Context, p ClientProcess, cfg ClientConfig) (int, error) {
	if cfg.HostKey == nil || cfg.Identity == nil {
		return -1, errors.New("run app: HostKey and Identity are required")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	spec := clientSpec{
		Addr: cfg.Addr, HostKey: string(ssh.MarshalAuthorizedKey(cfg.HostKey)), User: cfg.User,
		Command: cfg.Command, NoX11: cfg.NoX11, HasStdin: cfg.Stdin != nil,
		HandshakeTimeout: cfg.HandshakeTimeout, MaxX11Conns: cfg.MaxX11Conns, Shares: cfg.Shares,
	}
	if !cfg.NoX11 {
		// Empty ones default in the child as in RunApp (from the
		// environment it inherits, unless p.Env replaces it).
		spec.Display, spec.XAuthority = cfg.Display, cfg.XAuthority
		spec.TrustedDisplay = cfg.TrustedDisplay
		spec.IsolatedDisplay = cfg.IsolatedDisplay
	}
	specR, specW, err := os.Pipe()
	if err != nil {
		return -1, fmt.Errorf("client process: %w", err)
	}
	defer specR.Close()
	defer specW.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return -1, fmt.Errorf("client process: %w", err)
	}
	defer statusR.Close()
	defer statusW.Close()
	pair, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("client process: agent socket pair: %w", err)
	}
	agentChild := os.NewFile(uintptr(pair[1]), "agent-child")
	defer agentChild.Close()
	agentFile := os.NewFile(uintptr(pair[0]), "agent")
	agentConn, err := net.FileConn(agentFile)
	agentFile.Close()
	if err != nil {
		return -1, fmt.Errorf("client process: agent socket: %w", err)
	}
	defer agentConn.Close()

	cmd := exec.Command(p.Path, p.Args...)
	cmd.Env = RelayEnv(p.Env) // nil: this process's, as exec's
	cmd.Stdin, cmd.Stdout, cmd.Stderr = cfg.Stdin, cfg.Stdout, cfg.Stderr
	cmd.ExtraFiles = []*os.File{specR, agentChild, statusW} // fds 3, 4, 5
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("starting client process %s: %w", p.Path, err)
	}
	specR.Close()
	agentChild.Close()
	statusW.Close()

	var bg sync.WaitGroup
	defer bg.Wait()
	bg.Add(1)
	go func() {
		defer bg.Done()
		agent.ServeAgent(signOnlyAgent{cfg.Identity}, agentConn)
	}()
	// The spec, then the pipe stays open until the session should end.
	if err := json.NewEncoder(specW).Encode(spec); err != nil {
		log.Warn("client process: sending its configuration", "err", err)
	}
	stop := context.AfterFunc(ctx, func() { specW.Close() })
	defer stop()
	// A child that ignores the closed pipe is killed.
	bg.Add(1)
	done := make(chan struct{})
	defer close(done)
	go func() {
		defer bg.Done()
		select {
		case <-ctx.Done():
		case <-done:
			return
		}
		select {
		case <-time.After(cmd.WaitDelay):
			cmd.Process.Kill()
		case <-done:
		}
	}()

	final, sawFinal := readClientStatus(ctx, statusR, cfg.Started, log)
	agentConn.Close()
	werr := cmd.Wait()
	if ctx.Err() != nil {
		return -1, fmt.Errorf("running %q: %w", cfg.Command, ctx.Err())
	}
	switch {
	case !sawFinal:
		return -1, fmt.Errorf("running %q: client process ended without a result: %v", cfg.Command, werr)
	case final.Error != "" && final.Display:
		return -1, &DisplayError{msg: final.Error}
	case final.Error != "":
		return -1, errors.New(final.Error)
	}
	return final.Code, nil
}

// readClientStatus relays a client process's log records to log, calls
// started once, and returns its final status.
func readClientStatus(ctx context.Context, r io.Reader, started func(), log *slog.Logger) (clientStatus, bool) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 4096), maxStatusLine)
	var final clientStatus
	saw := false
	for sc.Scan() {
		var st clientStatus
		if json.Unmarshal(sc.Bytes(), &st) == nil && st.Status != "" {
			switch st.Status {
			case "started":
				if started != nil {
					started()
					started = nil
				}
			case "exit":
				final, saw = st, true
			}
			continue
		}
		relayLogRecord(ctx, log, sc.Bytes())
	}
	return final, saw
}

// relayLogRecord re-logs one JSON slog record of a client process.
func relayLogRecord(ctx context.Context, log *slog.Logger, line []byte) {
	var rec map[string]any
	if err := json.Unmarshal(line, &rec); err != nil {
		log.Warn("client process", "output", string(line))
		return
	}
	var level slog.Level
	if s, ok := rec[slog.LevelKey].(string); ok {
		level.UnmarshalText([]byte(s))
	}
	msg, _ := rec[slog.MessageKey].(string)
	delete(rec, slog.LevelKey)
	delete(rec, slog.MessageKey)
	delete(rec, slog.TimeKey)
	attrs := make([]any, 0, 2*len(rec))
	for k, v := range rec {
		attrs = append(attrs, k, v)
	}
	log.Log(ctx, level, msg, attrs...)
}

// signOnlyAgent is an SSH agent that signs with one key and does nothing
// else.
type signOnlyAgent struct{ signer ssh.Signer }

var errAgentReadOnly = errors.New("agent: operation not supported")

func (a signOnlyAgent) List() ([]*agent.Key, error) {
	pub := a.signer.PublicKey()
	return []*agent.Key{{Format: pub.Type(), Blob: pub.Marshal(), Comment: "ebrainpool identity"}}, nil
}

func (a signOnlyAgent) Sign(key ssh.PublicKey, data []byte) (*ssh.Signature, error) {
	return a.SignWithFlags(key, data, 0)
}

func (a signOnlyAgent) SignWithFlags(key ssh.PublicKey, data []byte, flags agent.SignatureFlags) (*ssh.Signature, error) {
	if string(key.Marshal()) != string(a.signer.PublicKey().Marshal()) {
		return nil, errors.New("agent: unknown key")
	}
	if as, ok := a.signer.(ssh.AlgorithmSigner); ok {
		switch {
		case flags&agent.SignatureFlagRsaSha256 != 0:
			return as.SignWithAlgorithm(rand.Reader, data, ssh.KeyAlgoRSASHA256)
		case flags&agent.SignatureFlagRsaSha512 != 0:
			return as.SignWithAlgorithm(rand.Reader, data, ssh.KeyAlgoRSASHA512)
		}
	}
	return a.signer.Sign(rand.Reader, data)
}

func (a signOnlyAgent) Extension(string, []byte) ([]byte, error) {
	return nil, agent.ErrExtensionUnsupported
}
func (signOnlyAgent) Add(agent.AddedKey) error       { return errAgentReadOnly }
func (signOnlyAgent) Remove(ssh.PublicKey) error     { return errAgentReadOnly }
func (signOnlyAgent) RemoveAll() error               { return errAgentReadOnly }
func (signOnlyAgent) Lock([]byte) error              { return errAgentReadOnly }
func (signOnlyAgent) Unlock([]byte) error            { return errAgentReadOnly }
func (signOnlyAgent) Signers() ([]ssh.Signer, error) { return nil, errAgentReadOnly }

// ClientProcessMain is the body of a client process started by
// RunAppProcess: it tunes the runtime (TuneRelayProcess), runs the
// session described on its descriptors and returns the process's exit
// code (0 once the result was reported, 2 if it could not be).
func ClientProcessMain() int {
	TuneRelayProcess()
	status := os.NewFile(fdClientStatus, "status")
	specF := os.NewFile(fdClientSpec, "spec")
	agentF := os.NewFile(fdClientAgent, "agent")
	if status == nil || specF == nil || agentF == nil {
		fmt.Fprintln(os.Stderr, "client process: started without its descriptors")
		return 2
	}
	var mu sync.Mutex // one line at a time on the status pipe
	lw := &lockedWriter{mu: &mu, w: status}
	log := slog.New(slog.NewJSONHandler(lw, nil))
	report := func(st clientStatus) bool {
		b, _ := json.Marshal(st)
		_, err := lw.Write(append(b, '\n'))
		return err == nil
	}
	code, err := runClientProcess(specF, agentF, log, func() { report(clientStatus{Status: "started"}) })
	st := clientStatus{Status: "exit", Code: code}
	if err != nil {
		st.Error = err.Error()
		var de *DisplayError
		st.Display = errors.As(err, &de)
	}
	if !report(st) {
		return 2
	}
	return 0
}

func runClientProcess(specF, agentF *os.File, log *slog.Logger, started func()) (int, error) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dec := json.NewDecoder(io.LimitReader(specF, maxStatusLine))
	var spec clientSpec
	if err := dec.Decode(&spec); err != nil {
		return -1, fmt.Errorf("client process: reading its configuration: %w", err)
	}
	go func() {
		// The parent closes the spec pipe to end the session.
		io.Copy(io.Discard, specF)
		cancel()
	}()
	hostKey, err := ParseAuthorizedKey(spec.HostKey)
	if err != nil {
		return -1, fmt.Errorf("client process: %w", err)
	}
	ac, err := net.FileConn(agentF)
	agentF.Close()
	if err != nil {
		return -1, fmt.Errorf("client process: agent socket: %w", err)
	}
	var closeAgent sync.Once
	defer closeAgent.Do(func() { ac.Close() })
	signers, err := agent.NewClient(ac).Signers()
	if err != nil || len(signers) != 1 {
		return -1, fmt.Errorf("client process: identity from the parent's agent: %d keys, %v", len(signers), err)
	}
	cfg := ClientConfig{
		Addr: spec.Addr, HostKey: hostKey, Identity: signers[0], User: spec.User,
		Command: spec.Command, NoX11: spec.NoX11, TrustedDisplay: spec.TrustedDisplay, IsolatedDisplay: spec.IsolatedDisplay, Display: spec.Display, XAuthority: spec.XAuthority,
		Stdout: os.Stdout, Stderr: os.Stderr, HandshakeTimeout: spec.HandshakeTimeout,
		MaxX11Conns: spec.MaxX11Conns, Shares: spec.Shares, Logger: log,
		Started: func() {
			closeAgent.Do(func() { ac.Close() }) // authenticated: no more signing
			started()
		},
	}
	if spec.HasStdin {
		cfg.Stdin = os.Stdin
	}
	return RunApp(ctx, cfg)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
