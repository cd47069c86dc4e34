// Package tunnel carries one granted application session from a requester
// to the sandbox on a colleague's host and its windows back:
//
//   - forward.go: the host side, a temporary single-session TCP port forward
//     that hands its one accepted socket straight into the container
//     (inetd style, no relay process);
//   - endpoint.go: the guest side, an SSH server on that one socket that
//     runs only the approved command and forwards its X11 connections back;
//   - client.go: the requester side, an SSH client that pins the endpoint's
//     host key, asks for X11 forwarding with a fake cookie and relays X11
//     connections to the real local display with the real cookie;
//   - grant.go: helpers for a manual grant usable with stock OpenSSH.
package tunnel
