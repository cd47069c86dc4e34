// Package ui is the eBrainPool desktop interface, built with Fyne: the tray
// icon and menu, the peer browser, the accept-request popup, the sessions
// window and the settings window.
//
// The package talks to the rest of the program only through Backend, which
// *daemon.Daemon satisfies; tests drive it with a fake. Every widget is
// touched on the Fyne thread: events from the backend and results of slow
// calls (a peer's app list) are handed over with fyne.Do.
package ui
