package cli

import (
	"os"
	"path/filepath"

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
