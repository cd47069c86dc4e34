package ui

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// autostartEntry is the desktop entry that starts eBrainPool at login,
// quietly: no window even if the tray host is not up yet (starting it
// again from the menu shows the window).
func autostartEntry(exe string) string {
	if strings.ContainsAny(exe, " \t\"'\\") {
		exe = `"` + strings.NewReplacer(`\`, `\\\\`, `"`, `\"`).Replace(exe) + `"`
	}
	return "[Desktop Entry]\n" +
		"Type=Application\n" +
		"Name=eBrainPool\n" +
		"Comment=Run apps from your colleagues' computers\n" +
		"Exec=" + exe + " gui --show none\n" +
		"Icon=" + AppID + "\n" +
		"Terminal=false\n" +
		"X-GNOME-Autostart-enabled=true\n"
}

// autostartEnabled reports whether the autostart entry exists.
func autostartEnabled(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// setAutostart writes or removes the autostart entry.
func setAutostart(path, exe string, on bool) error {
	if !on {
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("removing %s: %w", path, err)
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", filepath.Dir(path), err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(autostartEntry(exe)), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
