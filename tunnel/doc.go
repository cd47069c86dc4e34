// Package tunnel carries one granted application session from a requester
// to the sandbox on a colleague's host and its windows back:
//
//   - forward.go: the host side, a temporary single-session TCP port forward
//     that hands each accepted socket straight into the container (inetd
//     style, no relay process); with a reporting Handoff only a connection
//     that authenticated is the session, and failed attempts are bounded;
//   - endpoint.go: the guest side, an SSH server on that one socket that
//     runs only the approved command and forwards its X11 connections back,
//     and the claim protocol through which it tells the forward it
//     authenticated (ClaimOver, ServeClaimed);
//   - client.go: the requester side, an SSH client that pins the endpoint's
//     host key, asks for X11 forwarding with a fake cookie and relays X11
//     connections to the real local display with the real cookie;
//   - clientproc.go: that client in a process of its own (RunAppProcess,
//     ClientProcessMain), signing through an agent on a socket pair;
//   - share.go: the requester's files in a session: an SFTP server
//     (github.com/pkg/sftp's request server) serving exactly one Share, a
//     folder through os.Root or a set of chosen files, refusing and
//     logging anything outside it (symlinks out, `..`, device files,
//     sockets, FIFOs, links made, read-only changes);
//   - guestfiles.go: the files channel (FilesChannelType) an endpoint
//     opens to its client for each share, the endpoint serving each
//     mount through sshfs -o passive on it, the client answering it;
//   - guestmount.go: the privileged stage of such an endpoint
//     (GuestMountMain, `ebrainpool guest-mount`, the container's root):
//     a user and mount namespace of its own (the container's mounts
//     as slaves there) with a FUSE mount per share in the guest's home,
//     the endpoint run as the guest as the init of a PID namespace of its
//     own, the mount points removed afterwards;
//   - display.go: checking the requester's display before asking, with a
//     specific error for each way it can be unusable (DisplayError);
//   - x11.go: X display names, dialing a display, the X connection setup
//     and the relay;
//   - xsecurity.go: display protection, the default: the session's
//     untrusted authorization made by the requester's X server (SECURITY
//     extension, SecurityGenerateAuthorization over our own X connection),
//     held open for the session and revoked at its end;
//   - x11filter.go: the filter an untrusted session's X11 channels pass
//     through, which keeps QueryTree, GetProperty and ListProperties to
//     the root and the session's own windows;
//   - xpra.go: the isolated display (opt-in): the app under `xpra start`
//     in the sandbox, its socket relayed over an xpra@ebrainpool channel
//     to an `xpra attach` on the requester's side, everything ended with
//     the session;
//   - xauth.go: reading and writing Xauthority files;
//   - keys.go: OpenSSH host and identity keys on disk;
//   - grant.go: the known_hosts line and ssh command of a manual grant usable with stock OpenSSH, and key parsing.
package tunnel
