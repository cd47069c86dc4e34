package ui

import "github.com/go-gl/glfw/v3.3/glfw"

// noFocusOnShow makes the windows created from now on not take the
// keyboard focus when they are shown (GLFW's FOCUS_ON_SHOW, on by default,
// which Fyne 2.7 leaves so: on X11 without a window manager that is an
// XSetInputFocus, with one a _NET_ACTIVE_WINDOW request). A request popup
// opening must not take the keys the user is typing elsewhere; the other
// windows ask for the focus themselves (showWindow: RequestFocus). It runs
// on the Fyne thread of the GLFW driver, once GLFW is initialised (a
// window hint is GLFW's global state, read at each window's creation).
func noFocusOnShow() {
	glfw.WindowHint(glfw.FocusOnShow, glfw.False)
}
