package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ebrainpool/ebrainpool/app/catalog"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/sandbox"
)

var update = flag.Bool("update", false, "rewrite testdata/json from jsonExamples")

func goldenPath(command string) string {
	return filepath.Join("testdata", "json", strings.ReplaceAll(command, " ", "-")+".json")
}

// TestJSONSchema pins every command's --json: the example (made of the
// view types) must print exactly testdata/json/COMMAND.json, so renaming,
// adding or removing a key, or changing a value's type or format fails
// here (run with -update after a deliberate, documented change).
func TestJSONSchema(t *testing.T) {
	examples := map[string]bool{}
	for _, ex := range jsonExamples() {
		examples[ex.Command] = true
		t.Run(ex.Command, func(t *testing.T) {
			var b bytes.Buffer
			if err := printJSON(&b, ex.Value); err != nil {
				t.Fatal(err)
			}
			path := goldenPath(ex.Command)
			if *update {
				os.MkdirAll(filepath.Dir(path), 0o755)
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if b.String() != string(want) {
				t.Errorf("%s --json changed:\n%s\nwant (%s):\n%s", ex.Command, b.String(), path, want)
			}
			// Every key of the type appears in the example, in snake_case,
			// and no key may be left out (omitempty).
			checkKeys(t, reflect.TypeOf(ex.Value))
		})
	}
	// Every command with --json has an example; no example without one.
	for _, c := range commands() {
		fs := newFlagSet(c)
		has := fs.Lookup("json") != nil
		if has && !c.Hidden && !examples[c.Name] {
			t.Errorf("%s has --json but no example in jsonExamples", c.Name)
		}
		if !has && examples[c.Name] {
			t.Errorf("jsonExamples has %s, which has no --json", c.Name)
		}
		delete(examples, c.Name)
	}
	for name := range examples {
		t.Errorf("jsonExamples has %q, which is no command", name)
	}
}

func checkKeys(t *testing.T, typ reflect.Type) {
	t.Helper()
	for typ.Kind() == reflect.Slice || typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	if typ.Kind() != reflect.Struct || typ == reflect.TypeOf(rfc3339{}) {
		return
	}
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		tag := f.Tag.Get("json")
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" || name != strings.ToLower(name) || strings.Contains(name, "-") {
			t.Errorf("%s.%s: JSON key %q is not snake_case", typ.Name(), f.Name, name)
		}
		if opts != "" {
			t.Errorf("%s.%s: JSON options %q (keys are always present)", typ.Name(), f.Name, opts)
		}
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(rfc3339{}) {
			checkKeys(t, f.Type)
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Int64 && !strings.HasSuffix(name, "_bytes") && !strings.HasSuffix(name, "_ns") {
			t.Errorf("%s.%s: an integer %q that is not a size or duration: times are RFC 3339 strings", typ.Name(), f.Name, name)
		}
	}
}

// The views carry each field of what they view to its key.
func TestViews(t *testing.T) {
	since := time.Date(2026, 3, 2, 14, 4, 31, 0, time.UTC)
	for _, tc := range []struct {
		name string
		got  any
		want string
	}{
		{"peer", peerView(dbusapi.Peer{Fingerprint: "SHA256:x", Short: "ABCD", Name: "bob", Host: "h.local", Address: "10.0.0.2", Port: 4000, Trust: dbusapi.TrustChanged}),
			`{"fingerprint":"SHA256:x","short_fingerprint":"ABCD","name":"bob","host":"h.local","address":"10.0.0.2","port":4000,"trust":"changed","added":null,"reach":null,"last_seen":null,"introducer":false,"introduced_by":null}`},
		{"peer added by address", withAdded(peerView(dbusapi.Peer{Fingerprint: "SHA256:x", Short: "ABCD", Name: "bob", Host: "h.example", Port: 42331, Trust: dbusapi.TrustVerified}),
			dbusapi.AddedPeer{Address: "h.example:42331", Reach: dbusapi.ReachUnreachable, LastSeen: since.Unix()}),
			`{"fingerprint":"SHA256:x","short_fingerprint":"ABCD","name":"bob","host":"h.example","address":"","port":42331,"trust":"verified","added":"h.example:42331","reach":"unreachable","last_seen":"2026-03-02T14:04:31Z","introducer":false,"introduced_by":null}`},
		{"added peer never seen", addedView(dbusapi.AddedPeer{Address: "[fe80::1%eth0]:42331", Short: "ABCD", Reach: dbusapi.ReachUnknown}),
			`{"address":"[fe80::1%eth0]:42331","fingerprint":"","short_fingerprint":"ABCD","name":"","reach":"unknown","last_seen":null,"error":""}`},
		{"app", appView(dbusapi.App{ID: "xlogo", Name: "X Logo", Comment: "c", Icon: []byte{1}}),
			`{"id":"xlogo","name":"X Logo","comment":"c","has_icon":true}`},
		{"app without icon", appView(dbusapi.App{ID: "xlogo"}), `{"id":"xlogo","name":"","comment":"","has_icon":false}`},
		{"request", requestView(dbusapi.Request{ID: "r1", Peer: "SHA256:a", PeerName: "alice", From: "10.0.0.3", App: "xlogo", FirstTime: true, Deadline: since.Unix()}),
			`{"id":"r1","peer_fingerprint":"SHA256:a","peer_name":"alice","from":"10.0.0.3","app":"xlogo","first_time":true,"deadline":"2026-03-02T14:04:31Z"}`},
		{"incoming session", sessionView(dbusapi.Session{ID: "s1", Direction: dbusapi.DirectionIncoming, Peer: "SHA256:a", PeerName: "alice", App: "X Logo", Since: since.Unix(), State: dbusapi.StageGranted, Session: "s1"}),
			`{"id":"s1","session":"s1","direction":"incoming","peer_fingerprint":"SHA256:a","peer_name":"alice","app":"X Logo","since":"2026-03-02T14:04:31Z","state":"granted"}`},
		{"outgoing session", sessionView(dbusapi.Session{ID: "o1", Direction: dbusapi.DirectionOutgoing, Peer: "SHA256:b", PeerName: "bob", App: "xlogo", Since: since.Unix(), State: dbusapi.StageConsent}),
			`{"id":"o1","session":null,"direction":"outgoing","peer_fingerprint":"SHA256:b","peer_name":"bob","app":"xlogo","since":"2026-03-02T14:04:31Z","state":"waiting for consent"}`},
		{"outgoing session granted", sessionView(dbusapi.Session{ID: "o2", Direction: dbusapi.DirectionOutgoing, Peer: "SHA256:b", PeerName: "bob", App: "xlogo", Since: since.Unix(), State: dbusapi.StageRunning, Session: "s9"}),
			`{"id":"o2","session":"s9","direction":"outgoing","peer_fingerprint":"SHA256:b","peer_name":"bob","app":"xlogo","since":"2026-03-02T14:04:31Z","state":"running"}`},
		{"local app", localAppView(catalog.App{ID: "xlogo", Name: "X Logo", Exec: []string{"xlogo", "-fg", "red"}}, catalog.Sharing{All: true}),
			`{"id":"xlogo","name":"X Logo","shared":true,"command":["xlogo","-fg","red"]}`},
		{"local app unshared without command", localAppView(catalog.App{ID: "a"}, catalog.Sharing{}),
			`{"id":"a","name":"","shared":false,"command":[]}`},
		{"running sandbox", sandboxView(sandbox.Info{Peer: "p", Name: "ebp-1", State: "RUNNING", Created: since.In(time.FixedZone("x", 3600)), Pids: 2, Memory: 1 << 20, CPU: 1500 * time.Millisecond, DiskBytes: 4096, DiskLimit: 1 << 30}),
			`{"peer":"p","name":"ebp-1","state":"RUNNING","created":"2026-03-02T14:04:31Z","processes":2,"memory_bytes":1048576,"cpu_ns":1500000000,"disk_bytes":4096,"disk_limit_bytes":1073741824}`},
		{"running sandbox, CPU unknown", sandboxView(sandbox.Info{Peer: "p", Name: "ebp-1", State: "RUNNING", Created: since, Pids: 1, CPU: -1, DiskBytes: 4096, DiskLimit: 1 << 30}),
			`{"peer":"p","name":"ebp-1","state":"RUNNING","created":"2026-03-02T14:04:31Z","processes":1,"memory_bytes":0,"cpu_ns":null,"disk_bytes":4096,"disk_limit_bytes":1073741824}`},
		{"stopped sandbox", sandboxView(sandbox.Info{Peer: "p", Name: "ebp-1", State: "STOPPED", Created: since, DiskBytes: 8192, DiskLimit: 1 << 30}),
			`{"peer":"p","name":"ebp-1","state":"STOPPED","created":"2026-03-02T14:04:31Z","processes":null,"memory_bytes":null,"cpu_ns":null,"disk_bytes":8192,"disk_limit_bytes":1073741824}`},
		{"sandbox never started", sandboxView(sandbox.Info{Peer: "p", Name: "ebp-1", State: "STOPPED", Created: since}),
			`{"peer":"p","name":"ebp-1","state":"STOPPED","created":"2026-03-02T14:04:31Z","processes":null,"memory_bytes":null,"cpu_ns":null,"disk_bytes":0,"disk_limit_bytes":null}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.got)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tc.want {
				t.Errorf("got  %s\nwant %s", b, tc.want)
			}
		})
	}
	var b bytes.Buffer
	printList(&b, []dbusapi.Peer(nil), peerView)
	if b.String() != "[]\n" {
		t.Errorf("an empty listing prints %q, want []", b.String())
	}
}

// keysOf is the sorted keys of each object of a JSON array (the first
// object's), for comparing a command's real output with its golden shape.
func keysOf(t *testing.T, js []byte) []string {
	t.Helper()
	var v any
	if err := json.Unmarshal(js, &v); err != nil {
		t.Fatalf("%v:\n%s", err, js)
	}
	if a, ok := v.([]any); ok {
		if len(a) == 0 {
			return nil
		}
		v = a[0]
	}
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("not an object: %s", js)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
