// Package e2e holds end-to-end tests of the whole binary: real users, real
// sandboxes, real session buses, real X servers and real SSH.
package e2e
