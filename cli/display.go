package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/identity"
)

// displayFlags are run's and open's choice of display access for the app,
// remembered per peer and app by the daemon.
type displayFlags struct{ trusted, protected, isolated bool }

const (
	trustedDisplayUsage = "give the app trusted access to your display, remembered for this app of this peer: " +
		"it can then see your whole screen and every window and type into any of them (run your commands)"
	protectedDisplayUsage = "confine the app to its own windows again (the default)"
	isolatedDisplayUsage  = "run the app on a display of its own in the sandbox, only its windows shown here through xpra " +
		"(needs xpra on both computers), remembered for this app of this peer: it cannot reach your other windows at all; GTK4 and OpenGL apps work"
)

func (d *displayFlags) add(fs *flag.FlagSet) {
	fs.BoolVar(&d.trusted, "trusted-display", false, trustedDisplayUsage)
	fs.BoolVar(&d.protected, "protected-display", false, protectedDisplayUsage)
	fs.BoolVar(&d.isolated, "isolated-display", false, isolatedDisplayUsage)
}

func (d *displayFlags) check() error {
	n := 0
	for _, b := range []bool{d.trusted, d.protected, d.isolated} {
		if b {
			n++
		}
	}
	if n > 1 {
		return usageError("--trusted-display, --protected-display and --isolated-display exclude each other")
	}
	return nil
}

// apply remembers a choice given and says on w which mode app runs in.
func (d *displayFlags) apply(ctx context.Context, c *dbusapi.Client, w io.Writer, peer, app string) error {
	var mode dbusapi.DisplayMode
	switch {
	case d.trusted:
		mode = dbusapi.DisplayTrusted
	case d.protected:
		mode = dbusapi.DisplayProtected
	case d.isolated:
		mode = dbusapi.DisplayIsolated
	}
	if mode != "" {
		if err := c.SetDisplayMode(ctx, peer, app, mode); err != nil {
			return fmt.Errorf("remembering the display access of %s: %w", app, err)
		}
	}
	mode, err := c.DisplayMode(ctx, peer, app)
	if err != nil {
		return fmt.Errorf("the display access of %s: %w", app, err)
	}
	fmt.Fprintf(w, "%s: %s\n", app, displayModeText(mode))
	return nil
}

// displayModeText says what the app may do on the user's display.
func displayModeText(mode dbusapi.DisplayMode) string {
	switch mode {
	case dbusapi.DisplayTrusted:
		return "display: TRUSTED: the app can see your whole screen and every window and type into any of them " +
			"(--protected-display confines it again)"
	case dbusapi.DisplayIsolated:
		return "display: isolated: the app draws on a display of its own in the sandbox; only its windows are shown here (xpra)"
	}
	return "display: protected: the app sees and controls only its own windows"
}

// displayWords are how `display` words a chosen mode.
var displayWords = map[dbusapi.DisplayMode]string{
	dbusapi.DisplayProtected: "protected",
	dbusapi.DisplayTrusted:   "TRUSTED",
	dbusapi.DisplayIsolated:  "isolated",
}

// displayChoiceJSON is one entry of `display --json`: a display mode
// chosen for an app of a peer.
type displayChoiceJSON struct {
	PeerFingerprint string `json:"peer_fingerprint"`
	PeerName        string `json:"peer_name"`
	App             string `json:"app"`
	AppName         string `json:"app_name"`
	Mode            string `json:"mode"` // trusted or isolated
}

func displayView(choices []dbusapi.DisplayChoice) []displayChoiceJSON {
	out := []displayChoiceJSON{}
	for _, c := range choices {
		out = append(out, displayChoiceJSON{PeerFingerprint: c.Peer, PeerName: c.PeerName, App: c.App, AppName: c.AppName, Mode: string(c.Mode)})
	}
	return out
}

// displayCommand lists the display modes chosen, says an app's, or
// chooses it without launching the app.
func displayCommand() *Command {
	var asJSON bool
	return &Command{
		Name: "display", Usage: "[--json] [PEER APP [protected|isolated|trusted]]",
		Summary: "List the display modes you chose for apps of peers (the others run protected); with PEER APP say the mode that app runs in, with a mode choose it (protected: back to the default) without launching it.",
		Details: "The modes are those of `run --trusted-display`, `--isolated-display` and `--protected-display`, and of the peer browser's display control (docs/display.md). " +
			"A choice is listed, and can be taken back, also while its peer is not on the network.",
		Args:  []string{"peer", "app", "protected|isolated|trusted"},
		Flags: func(fs *flag.FlagSet) { fs.BoolVar(&asJSON, "json", false, "print JSON (the list only)") },
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			switch {
			case fs.NArg() == 1 || fs.NArg() > 3:
				return usageError("expected no argument, PEER APP, or PEER APP MODE")
			case asJSON && fs.NArg() > 0:
				return usageError("--json prints the list: give no PEER")
			}
			return withClient(ctx, func(c *dbusapi.Client) error {
				if fs.NArg() == 0 {
					return listDisplayModes(ctx, c, env.Stdout, asJSON)
				}
				var d displayFlags
				if fs.NArg() == 3 {
					switch dbusapi.DisplayMode(fs.Arg(2)) {
					case dbusapi.DisplayProtected:
						d.protected = true
					case dbusapi.DisplayTrusted:
						d.trusted = true
					case dbusapi.DisplayIsolated:
						d.isolated = true
					default:
						return usageError("unknown display mode %q: protected, isolated or trusted", fs.Arg(2))
					}
				}
				return d.apply(ctx, c, env.Stdout, fs.Arg(0), fs.Arg(1))
			})
		},
	}
}

func listDisplayModes(ctx context.Context, c *dbusapi.Client, w io.Writer, asJSON bool) error {
	choices, err := c.DisplayModes(ctx)
	if err != nil {
		return fmt.Errorf("listing the display modes: %w", err)
	}
	if asJSON {
		return printJSON(w, displayView(choices))
	}
	if len(choices) == 0 {
		_, err := fmt.Fprintln(w, "Every app runs in the default display mode (protected).")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PEER\tFINGERPRINT\tAPP\tDISPLAY")
	for _, ch := range choices {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", ch.PeerName, identity.Fingerprint(ch.Peer).Short(), ch.App, displayWords[ch.Mode])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, "\n`ebrainpool display PEER APP protected` takes one back.")
	return err
}
