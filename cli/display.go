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
type displayFlags struct{ trusted, protected bool }

const (
	trustedDisplayUsage = "give the app trusted access to your display, remembered for this app of this peer: " +
		"it can then see your whole screen and every window and type into any of them (run your commands)"
	protectedDisplayUsage = "confine the app to its own windows again (the default)"
)

func (d *displayFlags) add(fs *flag.FlagSet) {
	fs.BoolVar(&d.trusted, "trusted-display", false, trustedDisplayUsage)
	fs.BoolVar(&d.protected, "protected-display", false, protectedDisplayUsage)
}

func (d *displayFlags) check() error {
	if d.trusted && d.protected {
		return usageError("--trusted-display and --protected-display exclude each other")
	}
	return nil
}

// apply remembers a choice given and says on w which mode app runs in.
func (d *displayFlags) apply(ctx context.Context, c *dbusapi.Client, w io.Writer, peer, app string) error {
	if d.trusted || d.protected {
		if err := c.SetTrustedDisplay(ctx, peer, app, d.trusted); err != nil {
			return fmt.Errorf("remembering the display access of %s: %w", app, err)
		}
	}
	trusted, err := c.TrustedDisplay(ctx, peer, app)
	if err != nil {
		return fmt.Errorf("the display access of %s: %w", app, err)
	}
	fmt.Fprintf(w, "%s: %s\n", app, displayModeText(trusted))
	return nil
}

// displayModeText says what the app may do on the user's display.
func displayModeText(trusted bool) string {
	if trusted {
		return "display: TRUSTED: the app can see your whole screen and every window and type into any of them " +
			"(--protected-display confines it again)"
	}
	return "display: protected: the app sees and controls only its own windows"
}
