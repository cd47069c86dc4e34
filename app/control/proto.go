// Package control is the protocol between eBrainPool instances: SSH with
// both sides authenticated by their Ed25519 identity keys, one
// "ebrainpool-control" channel per request, each carrying length-prefixed
// JSON messages: a versioned hello, then catalog, launch (progress, then a
// grant or a refusal; closing the channel cancels) or end. Every message is
// bounded and every step has a deadline.
package control

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Version is the protocol version this build speaks; Versions all it accepts.
const Version = 1

var Versions = []int{1}

// ChannelType is the SSH channel type of a control request.
const ChannelType = "ebrainpool-control"

// MaxMessage bounds one message (a catalog with small PNG icons fits).
const MaxMessage = 2 << 20

// Message types.
const (
	TypeHello    = "hello"
	TypeCatalog  = "catalog"
	TypeLaunch   = "launch"
	TypeEnd      = "end"
	TypeApps     = "apps"
	TypeProgress = "progress"
	TypeGrant    = "grant"
	TypeRefused  = "refused"
	TypeOK       = "ok"
)

// Msg is one protocol message; Type says which fields matter.
type Msg struct {
	Type     string `json:"type"`
	Versions []int  `json:"versions,omitempty"` // hello from the client
	Version  int    `json:"version,omitempty"`  // hello from the server
	Name     string `json:"name,omitempty"`     // hello: display name
	App      string `json:"app,omitempty"`      // launch
	// Files are what a launch's requester brings (names only; older hosts
	// ignore them, and their grant then has no Shares).
	Files []FileRef `json:"files,omitempty"`
	// Display is how the launch's requester shows the app on its display
	// (older requesters send none, older hosts ignore it).
	Display DisplayMode `json:"display,omitempty"`
	Session string      `json:"session,omitempty"` // end
	Stage   string      `json:"stage,omitempty"`   // progress
	Apps    []AppInfo   `json:"apps,omitempty"`    // apps
	Peers   []PeerInfo  `json:"peers,omitempty"`   // peer-list (introduce.go)
	Grant   *Grant      `json:"grant,omitempty"`   // grant
	Code    Code        `json:"code,omitempty"`    // refused
	Reason  string      `json:"reason,omitempty"`  // refused
}

// DisplayMode is how a requester shares its display with the app it runs.
type DisplayMode string

// Display modes.
const (
	// DisplayProtected: the app is an untrusted X client (X SECURITY
	// extension and the requester's filter): it sees and drives only its
	// own windows. The default.
	DisplayProtected DisplayMode = "protected"
	// DisplayTrusted: the app is a trusted X client, which can read every
	// window and the screen and send input anywhere; the requester chose
	// it for this app.
	DisplayTrusted DisplayMode = "trusted"
	// DisplayIsolated: the app draws on an X server of its own in the
	// sandbox (Xpra's) and only its windows travel, to an xpra client on
	// the requester's display: it cannot reach the requester's other
	// windows at all.
	DisplayIsolated DisplayMode = "isolated"
)

// AppInfo describes a shared app to a peer.
type AppInfo struct {
	ID         string   `json:"id"`
	Name       string   `json:"name"`
	Comment    string   `json:"comment,omitempty"`
	Categories []string `json:"categories,omitempty"`
	Icon       []byte   `json:"icon,omitempty"` // PNG
	// MimeTypes are the file types the app opens (its MimeType=), for an
	// app whose command line takes files.
	MimeTypes []string `json:"mime_types,omitempty"`
}

// FileRef is a file or folder a requester brings into a launch: its name
// only (the host shows it and names the mount after it; the contents stay
// with the requester, which serves them over the session's own SSH
// connection).
type FileRef struct {
	Name     string `json:"name"`
	Folder   bool   `json:"folder,omitempty"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// MaxFiles bounds the files and folders of one launch.
const MaxFiles = 64

// FilesHandler is a Handler whose launches take the files the requester
// brings (a Handler without it runs the app without them, and its grant
// says so by having no Shares).
type FilesHandler interface {
	Handler
	LaunchWith(ctx context.Context, p Peer, app string, files []FileRef, progress func(stage string)) (*Grant, error)
}

// CheckFiles refuses a launch's file list that is too long or has a name
// that is not one plain path element.
func CheckFiles(files []FileRef) error {
	if len(files) > MaxFiles {
		return Refuse(CodeBadRequest, fmt.Sprintf("a launch brings at most %d files and folders", MaxFiles))
	}
	for _, f := range files {
		if f.Name == "" || f.Name == "." || f.Name == ".." || len(f.Name) > 255 || strings.ContainsAny(f.Name, "/\x00") ||
			strings.IndexFunc(f.Name, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0 {
			return Refuse(CodeBadRequest, fmt.Sprintf("file name %q is not a plain name", f.Name))
		}
	}
	return nil
}

// Grant is what the requester needs to run the app: where to connect, the
// endpoint's host key to pin, the user and command, until when.
type Grant struct {
	Session string    `json:"session"`
	Host    string    `json:"host"`
	Port    int       `json:"port"`
	HostKey string    `json:"host_key"` // authorized_keys format
	User    string    `json:"user"`
	Command string    `json:"command"`
	Expires time.Time `json:"expires"`
	// Shares say that the host brings the launch's files in: the
	// directory each share appears as in the sandbox's home, in the order
	// the endpoint asks for them (the chosen files first, as one share,
	// then each folder). Absent from older hosts.
	Shares []string `json:"shares,omitempty"`
}

// Code says why a request was refused, precisely enough for the
// requester to tell its user the host's real cause.
type Code string

// Refusal codes.
const (
	CodeDenied      Code = "denied"  // the host's user said no
	CodeTimeout     Code = "timeout" // nobody answered before the host's consent timeout
	CodeBlocked     Code = "blocked"
	CodeBusy        Code = "busy" // a request of this peer already waits for an answer
	CodeRateLimited Code = "rate-limited"
	CodeNoSuchApp   Code = "no-such-app" // not shared (or not installed)
	// Why the host cannot share now (each replaces what older hosts sent
	// as CodeUnavailable): sharing turned off (or a host that cannot
	// share, the Flatpak), the one-time setup missing, sandboxes that
	// cannot be limited, a sandbox that failed to start.
	CodeSharingOff    Code = "sharing-off"
	CodeSetupMissing  Code = "setup-missing"
	CodeNoLimits      Code = "no-limits"
	CodeSandboxFailed Code = "sandbox-failed"
	// CodeUnavailable is what hosts before the split sent for all four;
	// this build never sends it and reads it as LegacyUnavailable says.
	CodeUnavailable Code = "unavailable"
	// CodeEnded answers an End for a session the host itself ended (its
	// user ended it, or the host shut down): the requester learns that
	// the session did not just fail.
	CodeEnded        Code = "ended"
	CodeVersion      Code = "version"
	CodeBadRequest   Code = "bad-request"
	CodeInternal     Code = "internal"
	CodeCanceled     Code = "canceled"
	CodeShuttingDown Code = "shutting-down"
)

// LegacyUnavailable is the precise code for a CodeUnavailable refusal from
// an older host, from the sentences those hosts sent; CodeUnavailable
// when the reason is none of them.
func LegacyUnavailable(reason string) Code {
	switch {
	case strings.Contains(reason, "sharing is turned off"), strings.Contains(reason, "as a Flatpak"):
		return CodeSharingOff
	case strings.Contains(reason, "one-time setup has not been done"):
		return CodeSetupMissing
	case strings.Contains(reason, "cannot limit sandboxes"):
		return CodeNoLimits
	case strings.Contains(reason, "could not start a sandbox"):
		return CodeSandboxFailed
	}
	return CodeUnavailable
}

// RefusedError is a refusal from the other side (or the handler's way to
// refuse), with a code and a sentence for the user.
type RefusedError struct {
	Code   Code
	Reason string
}

func (e *RefusedError) Error() string { return fmt.Sprintf("refused (%s): %s", e.Code, e.Reason) }

// Refuse builds a RefusedError.
func Refuse(code Code, reason string) error { return &RefusedError{Code: code, Reason: reason} }

// refusal is the RefusedError of a refused message; an older host's
// CodeUnavailable becomes the precise code.
func refusal(m *Msg) *RefusedError {
	code := m.Code
	if code == CodeUnavailable {
		code = LegacyUnavailable(m.Reason)
	}
	return &RefusedError{Code: code, Reason: m.Reason}
}

// IsRefused reports whether err is a refusal with the given code ("" any).
func IsRefused(err error, code Code) bool {
	var r *RefusedError
	return errors.As(err, &r) && (code == "" || r.Code == code)
}

// writeMsg writes one length-prefixed JSON message.
func writeMsg(w io.Writer, m *Msg) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding %s message: %w", m.Type, err)
	}
	if len(b) > MaxMessage {
		return fmt.Errorf("%s message of %d bytes exceeds %d", m.Type, len(b), MaxMessage)
	}
	buf := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(buf, uint32(len(b)))
	copy(buf[4:], b)
	_, err = w.Write(buf)
	return err
}

// readMsg reads one message, refusing anything larger than MaxMessage.
func readMsg(r io.Reader) (*Msg, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n == 0 || n > MaxMessage {
		return nil, fmt.Errorf("message length %d out of range (1..%d)", n, MaxMessage)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, err
	}
	var m Msg
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("decoding message: %w", err)
	}
	if m.Type == "" {
		return nil, errors.New("message without a type")
	}
	return &m, nil
}

// pickVersion is the highest version both sides speak, or 0.
func pickVersion(theirs []int) int {
	best := 0
	for _, v := range theirs {
		for _, o := range Versions {
			if v == o && v > best {
				best = v
			}
		}
	}
	return best
}
