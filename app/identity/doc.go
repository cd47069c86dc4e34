// Package identity holds a user's Ed25519 identity key, the fingerprints peers
// are known by, and the store of peers pinned on first contact.
//
// A peer is identified by the SHA-256 fingerprint of its public key, never by
// its display name: two peers announcing the same name with different keys
// are two different peers, and a pinned peer that suddenly presents another
// key is reported with ErrKeyChanged instead of being re-pinned.
package identity
