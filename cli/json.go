package cli

import (
	"encoding/json"
	"io"
	"time"

	"github.com/ebrainpool/ebrainpool/app/catalog"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/identity"
	"github.com/ebrainpool/ebrainpool/sandbox"
)

// The --json output of every command: these view types, not the D-Bus
// or sandbox types, so that the command line's JSON stays what the
// manual page documents whatever the wire format does. The convention:
// lowercase snake_case keys, every key always present (no omitempty;
// null where a value is unknown), times as RFC 3339 strings in UTC
// (rfc3339), a listing as an array ([] when empty, never null).
// jsonExamples has one example per command; the schema test pins them
// (testdata/json/).

// rfc3339 is a time in JSON: "2006-01-02T15:04:05Z", in UTC, to the
// second.
type rfc3339 time.Time

func (t rfc3339) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Time(t).UTC().Format(time.RFC3339))
}

func unixTime(sec int64) rfc3339 { return rfc3339(time.Unix(sec, 0)) }

type peerJSON struct {
	Fingerprint      string `json:"fingerprint"`
	ShortFingerprint string `json:"short_fingerprint"`
	Name             string `json:"name"`
	Host             string `json:"host"`
	Address          string `json:"address"`
	Port             uint16 `json:"port"`
	Trust            string `json:"trust"` // verified, new, changed or name-clash
	// Added is the address the peer was added with (`peer add`, --peer),
	// null for a peer only discovered; Reach and LastSeen say how it
	// answers (null when not added).
	Added    *string  `json:"added"`
	Reach    *string  `json:"reach"` // unknown, reachable, unreachable or key-changed
	LastSeen *rfc3339 `json:"last_seen"`
	// Introducer: you marked the peer as introducer; IntroducedBy names
	// the introducer that told of it (null: discovered or added).
	Introducer   bool    `json:"introducer"`
	IntroducedBy *string `json:"introduced_by"`
}

func peerView(p dbusapi.Peer) peerJSON {
	v := peerJSON{Fingerprint: p.Fingerprint, ShortFingerprint: p.Short, Name: p.Name, Host: p.Host, Address: p.Address, Port: p.Port, Trust: string(p.Trust), Introducer: p.Introducer}
	if p.IntroducedBy != "" {
		by := p.IntroducedBy
		v.IntroducedBy = &by
	}
	return v
}

// withAdded is v with how the peer added by address a answers.
func withAdded(v peerJSON, a dbusapi.AddedPeer) peerJSON {
	addr, reach := a.Address, string(a.Reach)
	v.Added, v.Reach = &addr, &reach
	if a.LastSeen != 0 {
		t := unixTime(a.LastSeen)
		v.LastSeen = &t
	}
	return v
}

type appJSON struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Comment string `json:"comment"`
	HasIcon bool   `json:"has_icon"`
}

func appView(a dbusapi.App) appJSON {
	return appJSON{ID: a.ID, Name: a.Name, Comment: a.Comment, HasIcon: len(a.Icon) > 0}
}

type requestJSON struct {
	ID              string  `json:"id"`
	PeerFingerprint string  `json:"peer_fingerprint"`
	PeerName        string  `json:"peer_name"`
	From            string  `json:"from"`
	App             string  `json:"app"`
	FirstTime       bool    `json:"first_time"`
	Deadline        rfc3339 `json:"deadline"`
}

func requestView(r dbusapi.Request) requestJSON {
	return requestJSON{ID: r.ID, PeerFingerprint: r.Peer, PeerName: r.PeerName, From: r.From, App: r.App, FirstTime: r.FirstTime, Deadline: unixTime(r.Deadline)}
}

// sessionJSON: ID is this side's handle (what `ebrainpool end` takes);
// Session is the id both sides know the session by, the host's session id
// (the one its grant carries): on the host the same as ID, on the
// requester null until the host granted the launch.
type sessionJSON struct {
	ID              string  `json:"id"`
	Session         *string `json:"session"`
	Direction       string  `json:"direction"` // incoming or outgoing
	PeerFingerprint string  `json:"peer_fingerprint"`
	PeerName        string  `json:"peer_name"`
	App             string  `json:"app"`
	Since           rfc3339 `json:"since"`
	State           string  `json:"state"`
}

func sessionView(s dbusapi.Session) sessionJSON {
	v := sessionJSON{ID: s.ID, Direction: string(s.Direction), PeerFingerprint: s.Peer, PeerName: s.PeerName, App: s.App, Since: unixTime(s.Since), State: string(s.State)}
	if s.Session != "" {
		id := s.Session
		v.Session = &id
	}
	return v
}

type localAppJSON struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Shared  bool     `json:"shared"`
	Command []string `json:"command"`
}

func localAppView(a catalog.App, s catalog.Sharing) localAppJSON {
	cmd := a.Exec
	if cmd == nil {
		cmd = []string{}
	}
	return localAppJSON{ID: a.ID, Name: a.Name, Shared: s.Shared(a.ID), Command: cmd}
}

type idJSON struct {
	Fingerprint      string `json:"fingerprint"`
	ShortFingerprint string `json:"short_fingerprint"`
}

func idView(fp identity.Fingerprint) idJSON {
	return idJSON{Fingerprint: string(fp), ShortFingerprint: fp.Short()}
}

// sandboxJSON: Name is the container's name; processes, memory and CPU
// time are null when the sandbox is not running (CPU time also when its
// cgroup does not tell). DiskBytes is what its home takes on this host's
// disk, running or not; DiskLimitBytes the home's size, the most it can
// take (null before its first start, when it has no home yet).
type sandboxJSON struct {
	Peer           string  `json:"peer"`
	Name           string  `json:"name"`
	State          string  `json:"state"`
	Created        rfc3339 `json:"created"`
	Processes      *int    `json:"processes"`
	MemoryBytes    *int64  `json:"memory_bytes"`
	CPUNs          *int64  `json:"cpu_ns"`
	DiskBytes      int64   `json:"disk_bytes"`
	DiskLimitBytes *int64  `json:"disk_limit_bytes"`
}

func sandboxView(i sandbox.Info) sandboxJSON {
	v := sandboxJSON{Peer: i.Peer, Name: i.Name, State: i.State, Created: rfc3339(i.Created), DiskBytes: i.DiskBytes}
	if i.DiskLimit > 0 {
		limit := i.DiskLimit
		v.DiskLimitBytes = &limit
	}
	if i.State == "RUNNING" {
		pids, mem := i.Pids, i.Memory
		v.Processes, v.MemoryBytes = &pids, &mem
		if i.CPU >= 0 {
			cpu := i.CPU.Nanoseconds()
			v.CPUNs = &cpu
		}
	}
	return v
}

// printJSON prints v indented, with a final newline.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// printList prints a listing as JSON: an array of view(item), [] when
// empty.
func printList[T, V any](w io.Writer, items []T, view func(T) V) error {
	out := make([]V, 0, len(items))
	for _, it := range items {
		out = append(out, view(it))
	}
	return printJSON(w, out)
}

// jsonExample is what the manual page shows for a command's --json and
// what the schema test pins.
type jsonExample struct {
	Command string // as in the command table
	Args    string // the arguments shown with it
	Value   any
}

// jsonExamples has one example per command with --json, made of the view
// types with made-up values.
func jsonExamples() []jsonExample {
	at := func(s string) rfc3339 {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			panic(err)
		}
		return rfc3339(t)
	}
	str := func(s string) *string { return &s }
	n, mem, cpu, disk := 3, int64(48234496), int64(1520000000), int64(2<<30)
	const bob = "SHA256:pOFYONeRL07H3T9tf0FhwK1slkJs5kvkcnOnf+vGgXA"
	const alice = "SHA256:WeXpogacdCqvmaxuNZFUpT1Te6ZU/j7aPAocB0T2i8o"
	const carol = "SHA256:nV6hbO9Qk0y1vQ3zLr9wX2e0mXq3S8cYbqTfGk4u7JA"
	at2 := func(s string) int64 { return time.Time(at(s)).Unix() }
	ptr := func(t rfc3339) *rfc3339 { return &t }
	return []jsonExample{
		{"id", "", idJSON{Fingerprint: alice, ShortFingerprint: "LHS6-TIQG-TR2C-VL4Z"}},
		{"peers", "", []peerJSON{
			{Fingerprint: bob, ShortFingerprint: "UTQV-QOGX-SEXU-5R65", Name: "bob", Host: "bob-laptop.local", Address: "192.168.1.20", Port: 42331, Trust: "verified"},
			withAdded(peerJSON{Fingerprint: carol, ShortFingerprint: "TVPK-C3HP-KCJU-ZNN5", Name: "carol", Host: "carol.example.org", Address: "10.20.0.7", Port: 42331, Trust: "verified", Introducer: true},
				dbusapi.AddedPeer{Address: "carol.example.org:42331", Reach: dbusapi.ReachReachable, LastSeen: at2("2026-03-02T14:03:55Z")}),
			{Fingerprint: alice, ShortFingerprint: "LHS6-TIQG-TR2C-VL4Z", Name: "alice", Host: "10.30.0.4", Address: "10.30.0.4", Port: 42331, Trust: "new", IntroducedBy: str("carol")},
		}},
		{"peer add", "carol.example.org", addedJSON{Address: "carol.example.org:42331", Fingerprint: carol, ShortFingerprint: "TVPK-C3HP-KCJU-ZNN5", Name: "carol", Reach: "reachable", LastSeen: ptr(at("2026-03-02T14:03:55Z")), Error: ""}},
		{"apps", "bob", []appJSON{
			{ID: "org.gnome.Calculator", Name: "Calculator", Comment: "Perform arithmetic, scientific or financial calculations", HasIcon: true},
		}},
		{"pending", "", []requestJSON{
			{ID: "5f1c2a9e0b7d", PeerFingerprint: alice, PeerName: "alice", From: "192.168.1.21", App: "org.gnome.Calculator", FirstTime: true, Deadline: at("2026-03-02T14:05:09Z")},
		}},
		{"sessions", "", []sessionJSON{
			{ID: "9a4e11c07b52", Session: str("9a4e11c07b52"), Direction: "incoming", PeerFingerprint: alice, PeerName: "alice", App: "Calculator", Since: at("2026-03-02T14:04:31Z"), State: "running"},
			{ID: "c3d0f5a1e866", Session: nil, Direction: "outgoing", PeerFingerprint: bob, PeerName: "bob", App: "org.gnome.Calculator", Since: at("2026-03-02T14:06:12Z"), State: "running"},
		}},
		{"rules", "", rulesJSON{
			Rules: []ruleJSON{
				{PeerFingerprint: alice, PeerName: "alice", App: "org.gnome.Calculator", AppName: "Calculator", Decision: "allow", Since: ptr(at("2026-03-02T14:04:31Z"))},
				{PeerFingerprint: bob, PeerName: "bob", App: "xterm", AppName: "XTerm", Decision: "deny", Since: nil},
			},
			Blocked: []blockedJSON{{PeerFingerprint: carol, PeerName: "carol"}},
		}},
		{"display", "", []displayChoiceJSON{
			{PeerFingerprint: bob, PeerName: "bob", App: "org.gimp.GIMP", AppName: "GIMP", Mode: "trusted"},
			{PeerFingerprint: bob, PeerName: "bob", App: "org.gnome.Calculator", AppName: "Calculator", Mode: "isolated"},
		}},
		{"local-apps", "", []localAppJSON{
			{ID: "org.gnome.Calculator", Name: "Calculator", Shared: true, Command: []string{"gnome-calculator"}},
		}},
		{"sandbox list", "", []sandboxJSON{
			{Peer: alice, Name: "ebp-b65ad5632b156577", State: "RUNNING", Created: at("2026-03-01T09:12:44Z"), Processes: &n, MemoryBytes: &mem, CPUNs: &cpu, DiskBytes: 215871488, DiskLimitBytes: &disk},
			{Peer: bob, Name: "ebp-129db0cd91f43909", State: "STOPPED", Created: at("2026-02-27T16:40:02Z"), DiskBytes: 1748992, DiskLimitBytes: &disk},
		}},
	}
}
