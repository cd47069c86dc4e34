package cli

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/godbus/dbus/v5"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// errNoBus: there is no session bus to reach the daemon on.
var errNoBus = errors.New("no session bus to reach the eBrainPool daemon on (is DBUS_SESSION_BUS_ADDRESS set? " +
	"run the commands in the desktop session of the desktop app or `ebrainpool daemon`)")

// connect connects to the daemon's session bus.
func connect() (*dbusapi.Client, error) {
	bus, err := dbus.ConnectSessionBus()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errNoBus, err)
	}
	return dbusapi.NewClient(bus), nil
}

func withClient(ctx context.Context, f func(*dbusapi.Client) error) error {
	c, err := connect()
	if err != nil {
		return err
	}
	defer c.Close()
	return f(c)
}

// runError is the error `run` returns for a launch that ended with the
// app's exit status and err (from dbusapi.Client.Run): nil when the app
// exited with 0, else an error with the exit status (launchExit).
func runError(app string, status int, err error) error {
	var le *dbusapi.LaunchError
	if errors.As(err, &le) {
		msg := le.Message
		if msg == "" {
			msg = outcomeSentence(app, le.Outcome)
		}
		o := le.Outcome
		if o == "" || o == dbusapi.OutcomeExited {
			o = dbusapi.OutcomeFailed // a failure from a daemon without outcomes
		}
		if o == dbusapi.OutcomeUnprotectedDisplay {
			msg += "\n  fix: add --isolated-display (needs xpra on both computers), or --trusted-display (remembered for this app of this peer) only if you trust it with everything on your screen"
		}
		return &codedError{code: launchExit(o, -1), err: &outcomeError{outcome: o, msg: msg}}
	}
	if err != nil {
		return err
	}
	if status == 0 {
		return nil
	}
	if status < 0 {
		return fmt.Errorf("%s ended without an exit status", app)
	}
	return exitError(launchExit(dbusapi.OutcomeExited, status))
}

// codedError is an error with its exit status.
type codedError struct {
	code int
	err  error
}

func (e *codedError) Error() string { return e.err.Error() }
func (e *codedError) Unwrap() error { return e.err }
func (e *codedError) ExitCode() int { return e.code }

// outcomeSentence says what an outcome means when the daemon said
// nothing more.
func outcomeSentence(app string, o dbusapi.Outcome) string {
	switch o {
	case dbusapi.OutcomeEnded:
		return app + " was ended here before it exited"
	case dbusapi.OutcomeEndedByHost:
		return "the host ended " + app
	}
	return fmt.Sprintf("%s did not run (%s)", app, o)
}

// resolveApp is the desktop ID of app in a peer's catalog: app itself when
// an app has that ID, else the one app whose visible name (or ID) it is,
// ignoring case. Several apps of that name are a usage error listing
// their IDs; none is a not-shared error listing what the peer shares.
func resolveApp(peer, app string, catalog []dbusapi.App) (string, error) {
	for _, a := range catalog {
		if a.ID == app {
			return a.ID, nil
		}
	}
	var byName, byID []dbusapi.App
	for _, a := range catalog {
		if strings.EqualFold(strings.TrimSpace(a.Name), strings.TrimSpace(app)) {
			byName = append(byName, a)
		}
		if strings.EqualFold(a.ID, app) || strings.EqualFold(a.ID, strings.TrimSuffix(app, ".desktop")) {
			byID = append(byID, a)
		}
	}
	for _, m := range [][]dbusapi.App{byID, byName} {
		switch len(m) {
		case 0:
			continue
		case 1:
			return m[0].ID, nil
		}
		ids := make([]string, len(m))
		for i, a := range m {
			ids[i] = a.ID
		}
		sort.Strings(ids)
		return "", usageError("%s shares %d apps named %q: give one of their IDs: %s", peer, len(m), app, strings.Join(ids, ", "))
	}
	var shared []string
	for _, a := range catalog {
		shared = append(shared, fmt.Sprintf("%s (%s)", a.ID, a.Name))
	}
	sort.Strings(shared)
	list := "nothing"
	if len(shared) > 0 {
		list = strings.Join(shared, ", ")
	}
	return "", &codedError{code: ExitNotShared, err: &outcomeError{outcome: dbusapi.OutcomeNotShared,
		msg: fmt.Sprintf("%s does not share %q; it shares %s (see `ebrainpool apps %s`)", peer, app, list, peer)}}
}
