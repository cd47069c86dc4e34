package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/ebrainpool/ebrainpool/app/identity"
	"golang.org/x/crypto/ssh"
)

// ClientConfig configures a control connection to a peer.
type ClientConfig struct {
	Identity ssh.Signer // our identity key
	Name     string     // our display name
	// Expect is the fingerprint the peer announced. The host key must match
	// it; Verify (e.g. the pin store's) may refuse a key that changed.
	Expect identity.Fingerprint
	Verify func(key ssh.PublicKey) error
	// Probe, with no Expect, accepts the key the peer shows (Verify still
	// runs first and may refuse it): for showing a peer added by address
	// to the user before its key is pinned. Client.HostKey is that key;
	// nothing but the catalog should be asked on such a connection.
	Probe bool
	// Timeout bounds the TCP connect, the SSH handshake and each hello
	// (default 10s).
	Timeout time.Duration
}

// Client is a control connection to one peer.
type Client struct {
	ssh     *ssh.Client
	cfg     ClientConfig
	Name    string        // the peer's display name from its hello
	HostKey ssh.PublicKey // the peer's verified identity
}

// Dial connects to a peer's control port and authenticates both sides.
func Dial(ctx context.Context, addr string, cfg ClientConfig) (*Client, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Identity == nil || (cfg.Expect == "") != cfg.Probe {
		return nil, errors.New("control: Dial needs an identity and the expected fingerprint (or Probe, alone)")
	}
	d := net.Dialer{Timeout: cfg.Timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	var hostKey ssh.PublicKey
	sshCfg := &ssh.ClientConfig{
		User: "ebrainpool",
		Auth: []ssh.AuthMethod{ssh.PublicKeys(cfg.Identity)},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			// The pin check first: for a pinned peer a different key is a
			// key change (loud), not just a mismatch.
			if cfg.Verify != nil {
				if err := cfg.Verify(key); err != nil {
					return err
				}
			}
			if got := identity.FingerprintOf(key); !cfg.Probe && got != cfg.Expect {
				return fmt.Errorf("peer at %s presented key %s, not the announced %s: %w", addr, got, cfg.Expect, identity.ErrFingerprintMismatch)
			}
			hostKey = key
			return nil
		},
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           cfg.Timeout,
		ClientVersion:     "SSH-2.0-eBrainPool-control",
	}
	c.SetDeadline(time.Now().Add(cfg.Timeout))
	stop := context.AfterFunc(ctx, func() { c.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(c, addr, sshCfg)
	stop()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("authenticating with %s: %w", addr, err)
	}
	c.SetDeadline(time.Time{})
	return &Client{ssh: ssh.NewClient(sc, chans, reqs), cfg: cfg, HostKey: hostKey}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.ssh.Close() }

// RemoteAddr is the address the control connection reached the peer on.
func (c *Client) RemoteAddr() net.Addr { return c.ssh.RemoteAddr() }

// call opens a channel, says hello, sends req and returns the channel for
// the replies. Cancelling ctx closes the channel, which cancels on the host.
func (c *Client) call(ctx context.Context, req *Msg) (ssh.Channel, func(), error) {
	ch, reqs, err := c.ssh.OpenChannel(ChannelType, nil)
	if err != nil {
		return nil, nil, fmt.Errorf("opening a control channel: %w", err)
	}
	go ssh.DiscardRequests(reqs)
	stop := context.AfterFunc(ctx, func() { ch.Close() })
	done := func() { stop(); ch.Close() }
	t := time.AfterFunc(c.cfg.Timeout, func() { ch.Close() })
	err = writeMsg(ch, &Msg{Type: TypeHello, Versions: Versions, Name: c.cfg.Name})
	var hello *Msg
	if err == nil {
		hello, err = readMsg(ch)
	}
	t.Stop()
	if err != nil {
		done()
		return nil, nil, c.ctxErr(ctx, fmt.Errorf("hello: %w", err))
	}
	switch {
	case hello.Type == TypeRefused:
		done()
		return nil, nil, refusal(hello)
	case hello.Type != TypeHello || pickVersion([]int{hello.Version}) == 0:
		done()
		return nil, nil, Refuse(CodeVersion, fmt.Sprintf("the peer answered with protocol version %d, this build speaks %v", hello.Version, Versions))
	}
	c.Name = boundName(hello.Name)
	if err := writeMsg(ch, req); err != nil {
		done()
		return nil, nil, c.ctxErr(ctx, err)
	}
	return ch, done, nil
}

func (c *Client) ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// reply reads the final reply, passing progress messages to progress.
func (c *Client) reply(ctx context.Context, ch ssh.Channel, want string, progress func(string)) (*Msg, error) {
	for {
		m, err := readMsg(ch)
		if err != nil {
			return nil, c.ctxErr(ctx, fmt.Errorf("reading the reply: %w", err))
		}
		switch m.Type {
		case TypeProgress:
			if progress != nil {
				progress(m.Stage)
			}
		case TypeRefused:
			return nil, refusal(m)
		case want:
			return m, nil
		default:
			return nil, fmt.Errorf("unexpected %q reply", m.Type)
		}
	}
}

// Catalog asks for the peer's shared apps.
func (c *Client) Catalog(ctx context.Context) ([]AppInfo, error) {
	ch, done, err := c.call(ctx, &Msg{Type: TypeCatalog})
	if err != nil {
		return nil, err
	}
	defer done()
	m, err := c.reply(ctx, ch, TypeApps, nil)
	if err != nil {
		return nil, err
	}
	return m.Apps, nil
}

// Launch asks to run app and waits for the host's decision; cancelling ctx
// withdraws the request.
func (c *Client) Launch(ctx context.Context, app string, progress func(stage string)) (*Grant, error) {
	return c.LaunchWith(ctx, app, nil, progress)
}

// LaunchWith is Launch bringing files (names only; see FileRef).
func (c *Client) LaunchWith(ctx context.Context, app string, files []FileRef, progress func(stage string)) (*Grant, error) {
	return c.LaunchOpts(ctx, LaunchOptions{App: app, Files: files}, progress)
}

// LaunchOptions are what a launch asks for.
type LaunchOptions struct {
	App   string
	Files []FileRef
	// Display is told to the host, which shows it in its consent prompt.
	Display DisplayMode
}

// LaunchOpts is Launch with all its options.
func (c *Client) LaunchOpts(ctx context.Context, o LaunchOptions, progress func(stage string)) (*Grant, error) {
	ch, done, err := c.call(ctx, &Msg{Type: TypeLaunch, App: o.App, Files: o.Files, Display: o.Display})
	if err != nil {
		return nil, err
	}
	defer done()
	m, err := c.reply(ctx, ch, TypeGrant, progress)
	if err != nil {
		return nil, err
	}
	if m.Grant == nil {
		return nil, errors.New("grant message without a grant")
	}
	return m.Grant, nil
}

// End ends a session the host granted us.
func (c *Client) End(ctx context.Context, session string) error {
	ch, done, err := c.call(ctx, &Msg{Type: TypeEnd, Session: session})
	if err != nil {
		return err
	}
	defer done()
	_, err = c.reply(ctx, ch, TypeOK, nil)
	return err
}
