package dbusapi

import (
	"context"
	"fmt"

	"github.com/godbus/dbus/v5"
)

// Client calls the daemon's API.
type Client struct {
	conn *dbus.Conn
	obj  dbus.BusObject
}

// NewClient uses conn (a session bus connection).
func NewClient(conn *dbus.Conn) *Client {
	return &Client{conn: conn, obj: conn.Object(BusName, Path)}
}

// Connect connects to the session bus.
func Connect() (*Client, error) {
	conn, err := dbus.ConnectSessionBus()
	if err != nil {
		return nil, fmt.Errorf("connecting to the session bus (is DBUS_SESSION_BUS_ADDRESS set?): %w", err)
	}
	return NewClient(conn), nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

func (c *Client) call(ctx context.Context, method string, out any, args ...any) error {
	call := c.obj.CallWithContext(ctx, Interface+"."+method, 0, args...)
	if call.Err != nil {
		return remoteErr(call.Err)
	}
	if out != nil {
		if err := call.Store(out); err != nil {
			return fmt.Errorf("reading the %s reply: %w", method, err)
		}
	}
	return nil
}

// Peers lists the discovered peers.
func (c *Client) Peers(ctx context.Context) ([]Peer, error) {
	var p []Peer
	return p, c.call(ctx, "ListPeers", &p)
}

// Apps lists a peer's shared apps.
func (c *Client) Apps(ctx context.Context, peer string) ([]App, error) {
	var a []App
	return a, c.call(ctx, "ListApps", &a, peer)
}

// Pending lists the consent prompts waiting on this host.
func (c *Client) Pending(ctx context.Context) ([]Request, error) {
	var r []Request
	return r, c.call(ctx, "Pending", &r)
}

// Answer answers a prompt.
func (c *Client) Answer(ctx context.Context, id string, allow, remember bool) error {
	return c.call(ctx, "Answer", nil, id, allow, remember)
}

// Block blocks a peer.
func (c *Client) Block(ctx context.Context, peer string) error {
	return c.call(ctx, "Block", nil, peer)
}

// Sessions lists incoming and outgoing sessions.
func (c *Client) Sessions(ctx context.Context) ([]Session, error) {
	var s []Session
	return s, c.call(ctx, "Sessions", &s)
}

// EndSession ends a session.
func (c *Client) EndSession(ctx context.Context, id string) error {
	return c.call(ctx, "EndSession", nil, id)
}

// SharingStatus says whether this host shares apps and, when it cannot,
// why and whether SetUpSharing would fix it.
func (c *Client) SharingStatus(ctx context.Context) (available, canSetUp bool, reason string, err error) {
	call := c.obj.CallWithContext(ctx, Interface+".SharingStatus", 0)
	if call.Err != nil {
		return false, false, "", remoteErr(call.Err)
	}
	if err := call.Store(&available, &canSetUp, &reason); err != nil {
		return false, false, "", fmt.Errorf("reading the SharingStatus reply: %w", err)
	}
	return available, canSetUp, reason, nil
}

// SetUpSharing asks the daemon to run the one-time setup through polkit;
// it returns once sharing is available or with the reason it is not. It
// waits while polkit asks for a password: give ctx a generous deadline.
func (c *Client) SetUpSharing(ctx context.Context) error {
	return c.call(ctx, "SetUpSharing", nil)
}

// Launch asks the daemon to run app from peer and returns the launch id at
// once; use Run to wait for the result.
func (c *Client) Launch(ctx context.Context, peer, app string) (string, error) {
	var id string
	return id, c.call(ctx, "Launch", &id, peer, app)
}

// Run launches app from peer and waits until it ends (or, with detach,
// until it runs), reporting stages to progress. It returns the app's exit
// status; a refusal or failure is a *LaunchError with the daemon's reason
// and its Outcome.
func (c *Client) Run(ctx context.Context, peer, app string, detach bool, progress func(string)) (int, error) {
	return c.run(ctx, func() (string, error) { return c.Launch(ctx, peer, app) }, detach, progress)
}

// run starts a launch with launch and follows it (see Run).
func (c *Client) run(ctx context.Context, launch func() (string, error), detach bool, progress func(string)) (int, error) {
	// progress takes a plain string (a Stage's value) so callers need not
	// convert to print it.
	match := []dbus.MatchOption{dbus.WithMatchObjectPath(Path), dbus.WithMatchInterface(Interface)}
	if err := c.conn.AddMatchSignalContext(ctx, match...); err != nil {
		return -1, fmt.Errorf("subscribing to launch signals: %w", err)
	}
	defer c.conn.RemoveMatchSignalContext(context.Background(), match...)
	sigs := make(chan *dbus.Signal, 64)
	c.conn.Signal(sigs)
	defer c.conn.RemoveSignal(sigs)
	id, err := launch()
	if err != nil {
		return -1, err
	}
	for {
		select {
		case <-ctx.Done():
			c.EndSession(context.Background(), id)
			return -1, ctx.Err()
		case s, ok := <-sigs:
			if !ok {
				return -1, fmt.Errorf("the daemon went away during the launch")
			}
			if len(s.Body) == 0 || s.Body[0] != id {
				continue
			}
			switch s.Name {
			case Interface + ".LaunchProgress":
				if stage, _ := s.Body[1].(string); progress != nil {
					progress(stage)
					if detach && Stage(stage) == StageRunning {
						return 0, nil
					}
				}
			case Interface + ".LaunchFinished":
				code, msg, outcome := FinishedArgs(s.Body)
				if msg != "" || (outcome != OutcomeExited && outcome != "") {
					return int(code), &LaunchError{Outcome: outcome, Message: msg}
				}
				return int(code), nil
			}
		}
	}
}

// LaunchError is a launch that did not end with the app's exit status:
// refused, failed, or ended before the app exited. Outcome says why as a
// code; Message is the daemon's sentence.
type LaunchError struct {
	Outcome Outcome
	Message string
}

func (e *LaunchError) Error() string {
	if e.Message == "" {
		return string(e.Outcome)
	}
	return e.Message
}

// FinishedArgs reads a LaunchFinished signal's body (after the id): the
// exit status, the error text and the outcome. A daemon from before the
// outcome argument gives "" as the outcome.
func FinishedArgs(body []any) (exit int32, errText string, outcome Outcome) {
	if len(body) > 1 {
		exit, _ = body[1].(int32)
	}
	if len(body) > 2 {
		errText, _ = body[2].(string)
	}
	if len(body) > 3 {
		s, _ := body[3].(string)
		outcome = Outcome(s)
	}
	return exit, errText, outcome
}
