package session

import (
	"errors"
	"reflect"
	"testing"

	"github.com/ebrainpool/ebrainpool/app/control"
)

func TestLayoutAndClientShares(t *testing.T) {
	files := []string{"/home/alice/notes.txt", "/home/alice/old/notes.txt"}
	folders := []Folder{{Path: "/home/alice/Pictures/"}, {Path: "/mnt/Pictures", ReadOnly: true}, {Path: "/home/alice/files"}}
	refs := FileRefs(files, folders)
	want := []control.FileRef{{Name: "notes.txt"}, {Name: "notes (2).txt"}, {Name: "Pictures", Folder: true},
		{Name: "Pictures", Folder: true, ReadOnly: true}, {Name: "files", Folder: true}}
	if !reflect.DeepEqual(refs, want) {
		t.Fatalf("refs %+v", refs)
	}
	shares, paths := Layout("a/lice\n", refs)
	wantShares := []Share{{Name: "alice's files", Files: []string{"notes.txt", "notes (2).txt"}}, {Name: "alice's Pictures"},
		{Name: "alice's Pictures (2)", ReadOnly: true}, {Name: "alice's files (2)"}}
	if !reflect.DeepEqual(shares, wantShares) {
		t.Fatalf("shares %+v", shares)
	}
	if want := []string{"/home/guest/alice's files/notes.txt", "/home/guest/alice's files/notes (2).txt"}; !reflect.DeepEqual(paths, want) {
		t.Fatalf("paths %q", paths)
	}
	g := &control.Grant{}
	for _, s := range shares {
		g.Shares = append(g.Shares, s.Name)
	}
	ts, err := clientShares(g, files, folders)
	if err != nil || len(ts) != 4 || ts[0].Files[1] != files[1] || ts[2].Dir != "/mnt/Pictures" || !ts[2].ReadOnly || ts[3].Name != "alice's files (2)" {
		t.Fatalf("client shares %+v, %v", ts, err)
	}
	if _, err := clientShares(&control.Grant{}, files, nil); !errors.Is(err, ErrNoFileSharing) {
		t.Fatalf("an older host's grant: %v", err)
	}
	if s, err := clientShares(&control.Grant{}, nil, nil); s != nil || err != nil {
		t.Fatalf("nothing brought: %v %v", s, err)
	}
}
