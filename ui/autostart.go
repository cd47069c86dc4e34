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
// again from the menu shows the window). exec is the command before its
// arguments, e.g. the executable or flatpak run APP-ID.
func autostartEntry(exec []string) string {
	line := make([]string, 0, len(exec)+3)
	for _, a := range exec {
		line = append(line, quoteExecArg(a))
	}
	line = append(line, "gui", "--show", "none")
	return "[Desktop Entry]\n" +
		"Type=Application\n" +
		"Name=eBrainPool\n" +
		"Comment=Run apps from your colleagues' computers\n" +
		"Exec=" + strings.Join(line, " ") + "\n" +
		"Icon=" + AppID + "\n" +
		"Terminal=false\n" +
		"X-GNOME-Autostart-enabled=true\n"
}

// quoteExecArg quotes one argument of a desktop entry's Exec key: in
// double quotes, with " ` $ and \ escaped by a backslash, and every
// backslash then doubled by the string escaping applied before (so a
// literal $ is \\$ in the file).
func quoteExecArg(a string) string {
	if !strings.ContainsAny(a, " \t\n\"'\\><~|&;$*?#()`") {
		return a
	}
	return `"` + strings.NewReplacer(`\`, `\\\\`, `"`, `\\"`, "`", "\\\\`", `$`, `\\$`).Replace(a) + `"`
}

// autostartEnabled reports whether the autostart entry exists.
func autostartEnabled(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// setAutostart writes or removes the autostart entry.
func setAutostart(path string, exec []string, on bool) error {
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
	if err := os.WriteFile(tmp, []byte(autostartEntry(exec)), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
