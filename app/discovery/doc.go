// Package discovery announces this instance on the LAN and finds its peers
// through the system avahi-daemon over D-Bus (go-avahi).
//
// Each instance publishes one _ebrainpool._tcp service whose SRV port is its
// control port and whose TXT record carries the protocol version (v), the
// identity fingerprint (fp) and the display name (name). A Service browses
// and resolves the same type on IPv4 and IPv6 and keeps a list of peers
// keyed by fingerprint; announcements with a malformed or oversized TXT
// record are logged and ignored, and our own announcement is skipped.
//
// Service.Run survives avahi-daemon restarts (it watches NameOwnerChanged for
// org.freedesktop.Avahi and the server state, then re-publishes and rebuilds
// the peer list) and lost D-Bus connections (it redials with backoff through
// the DialFunc it was given). It drains every go-avahi channel, since an
// undrained browser stalls the whole connection.
package discovery
