package ui

import (
	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/theme"
)

// genericAppSVG is a generic application icon (a window with its title
// bar), for apps that have none: not a document, which is what they are
// not.
var genericAppSVG = []byte(`<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="24" height="24">` +
	`<path fill="#000000" fill-rule="evenodd" d="M3 3h18a1 1 0 0 1 1 1v16a1 1 0 0 1-1 1H3a1 1 0 0 1-1-1V4a1 1 0 0 1 1-1zM4 8v11h16V8zM5 5v1.5h1.5V5zm2.5 0v1.5H9V5zM10 5v1.5h1.5V5z"/>` +
	`</svg>`)

// genericAppIcon is that icon in the theme's foreground colour.
func genericAppIcon() fyne.Resource {
	return theme.NewThemedResource(fyne.NewStaticResource("application.svg", genericAppSVG))
}
