package cli

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
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
