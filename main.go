// Command ebrainpool runs applications installed on a colleague's machine
// inside a per-peer sandbox there, with the window on your own display.
package main

import (
	"os"

	_ "github.com/ebrainpool/ebrainpool/internal/localefix" // before Fyne initializes

	"github.com/ebrainpool/ebrainpool/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
