// Package localefix works around a locale quirk before any GUI package
// initializes: with LANG=C.UTF-8 (the default of many servers, containers
// and CI machines) the locale library Fyne uses takes "C" for a language
// name, and Fyne logs "Error parsing user locale C" from its package init,
// on every command. For C and POSIX locales it sets LANGUAGE=en (which only
// names the message language; gettext ignores it under a plain C locale).
//
// It imports nothing outside the standard library, so Go's initialization
// order (dependencies first, then by import path) runs it before Fyne's
// lang package, whose own dependencies sort after this path. Import it
// first from package main.
package localefix

import (
	"os"
	"strings"
)

func init() {
	if os.Getenv("LANGUAGE") != "" {
		return
	}
	loc := ""
	for _, k := range []string{"LC_ALL", "LC_MESSAGES", "LANG"} {
		if loc = os.Getenv(k); loc != "" {
			break
		}
	}
	if strings.HasPrefix(loc, "C.") || strings.HasPrefix(loc, "POSIX.") {
		os.Setenv("LANGUAGE", "en")
	}
}
