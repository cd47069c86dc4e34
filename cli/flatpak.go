package cli

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/ebrainpool/ebrainpool/internal/busrelay"
	"github.com/ebrainpool/ebrainpool/ui"
)

// flatpakApp is the Flatpak app ID this process runs as, or "" outside a
// Flatpak. Flatpak marks its sandboxes with /.flatpak-info and sets
// FLATPAK_ID.
func flatpakApp() string {
	if _, err := os.Stat("/.flatpak-info"); err != nil {
		return ""
	}
	if id := os.Getenv("FLATPAK_ID"); id != "" {
		return id
	}
	return ui.AppID
}

// flatpakAutostart is where a Flatpak'd desktop app's "start at login"
// entry goes and what it runs: the user's own autostart directory (exposed
// by the manifest's --filesystem=xdg-config/autostart:create; inside the
// Flatpak XDG_CONFIG_HOME is the app's private one) and flatpak run.
func flatpakAutostart(id string) (file string, exec []string) {
	dir := os.Getenv("HOST_XDG_CONFIG_HOME")
	if dir == "" || !filepath.IsAbs(dir) {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "autostart", ui.AppID+".desktop"), []string{"flatpak", "run", id}
}

// relayFlatpakBuses puts a busrelay between this process's D-Bus
// connections and Flatpak's bus proxies, which close a connection whose
// serials go backwards (see package busrelay). It points this process's
// DBUS_SESSION_BUS_ADDRESS and DBUS_SYSTEM_BUS_ADDRESS at the relays, so
// every connection made afterwards goes through them, the tray library's
// included. Outside a Flatpak it does nothing; a relay that cannot start
// leaves the direct address (which works, at that risk).
func relayFlatpakBuses(ctx context.Context, log *slog.Logger) {
	if flatpakApp() == "" {
		return
	}
	for _, v := range []string{"DBUS_SESSION_BUS_ADDRESS", "DBUS_SYSTEM_BUS_ADDRESS"} {
		addr := os.Getenv(v)
		if addr == "" {
			continue
		}
		r, err := busrelay.Start(ctx, addr, os.Getenv("XDG_RUNTIME_DIR"), log)
		if err != nil {
			log.Warn("no relay in front of the Flatpak's bus proxy", "bus", v, "err", err)
			continue
		}
		os.Setenv(v, r.Address())
	}
}
