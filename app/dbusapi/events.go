package dbusapi

import "github.com/godbus/dbus/v5/introspect"

// The signals that let a client follow what the desktop app's views
// follow: sessions starting and ending here, the rules changing, a peer's
// apps changing, discovery going on or off, a display mode chosen.
func init() {
	signals = append(signals,
		introspect.Signal{Name: "SessionStarted", Args: []introspect.Arg{{Name: "session", Type: sigOf(Session{})}, {Name: "by_rule", Type: "b"}}},
		introspect.Signal{Name: "SessionEnded", Args: []introspect.Arg{{Name: "id", Type: "s"}}},
		introspect.Signal{Name: "RulesChanged"},
		introspect.Signal{Name: "PeerAppsChanged", Args: []introspect.Arg{{Name: "fingerprint", Type: "s"}}},
		introspect.Signal{Name: "DiscoveryChanged", Args: []introspect.Arg{{Name: "state", Type: "s"}, {Name: "reason", Type: "s"}}},
		introspect.Signal{Name: "DisplayModesChanged"},
	)
}

// SessionStarted announces a peer's session starting here; byRule: a
// remembered decision let it in (nobody was asked).
func (s *Server) SessionStarted(sess Session, byRule bool) { s.emit("SessionStarted", sess, byRule) }

// SessionEnded announces a session here ending.
func (s *Server) SessionEnded(id string) { s.emit("SessionEnded", id) }

// RulesChanged announces that the remembered decisions or the block list
// changed (Rules, ListBlocked).
func (s *Server) RulesChanged() { s.emit("RulesChanged") }

// PeerAppsChanged announces that a peer's shared apps changed (ListApps).
func (s *Server) PeerAppsChanged(fingerprint string) { s.emit("PeerAppsChanged", fingerprint) }

// DiscoveryChanged announces discovery's new state (DiscoveryStatus).
func (s *Server) DiscoveryChanged(d Discovery) { s.emit("DiscoveryChanged", string(d.State), d.Err) }

// DisplayModesChanged announces that the display mode chosen for an app
// of a peer changed (DisplayModes, DisplayMode).
func (s *Server) DisplayModesChanged() { s.emit("DisplayModesChanged") }
