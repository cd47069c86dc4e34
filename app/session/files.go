package session

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path"
	"strings"

	"github.com/ebrainpool/ebrainpool/app/catalog"
	"github.com/ebrainpool/ebrainpool/app/consent"
	"github.com/ebrainpool/ebrainpool/app/control"
	"github.com/ebrainpool/ebrainpool/sandbox"
	"github.com/ebrainpool/ebrainpool/tunnel"
)

// The requester's files in a session. A launch names what the requester
// brings (control.FileRef: names only). Both sides lay it out the same
// way (Layout): the chosen files are one share, a folder in the guest's
// home named "OWNER's files" holding exactly them, and each folder is a
// share of its own, "OWNER's NAME"; the endpoint asks for the shares by
// their index in that order, the requester serves them (tunnel.Share), the
// host's grant names them (control.Grant.Shares). The app gets the files'
// paths as its Exec line's field codes ask (catalog.App.Command).

// Share is one share of a launch as the host lays it out.
type Share struct {
	Name     string   // the directory in the guest's home
	Files    []string // a file share's file names (else a folder share)
	ReadOnly bool
}

// Layout lays out the files a launch brings for owner (the requester's
// display name): the files as one share (first), then each folder. It
// returns the shares and the paths of the files as the app sees them.
func Layout(owner string, files []control.FileRef) (shares []Share, paths []string) {
	owner = ownerName(owner)
	used := map[string]bool{}
	unique := func(name string) string {
		n := name
		for i := 2; used[n]; i++ {
			n = fmt.Sprintf("%s (%d)", name, i)
		}
		used[n] = true
		return n
	}
	var names []string
	ro := false
	for _, f := range files {
		if !f.Folder {
			names = append(names, f.Name)
			ro = ro || f.ReadOnly
		}
	}
	if len(names) > 0 {
		sh := Share{Name: unique(owner + "'s files"), Files: names, ReadOnly: ro}
		shares = append(shares, sh)
		for _, n := range names {
			paths = append(paths, path.Join(sandbox.GuestHome, sh.Name, n))
		}
	}
	for _, f := range files {
		if f.Folder {
			shares = append(shares, Share{Name: unique(owner + "'s " + f.Name), ReadOnly: f.ReadOnly})
		}
	}
	return shares, paths
}

// ownerName is a display name made fit for a directory name.
func ownerName(name string) string {
	name = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f || r == '/' {
			return -1
		}
		return r
	}, strings.TrimSpace(name))
	name = strings.TrimLeft(name, ".")
	if len(name) > 64 {
		name = name[:64]
	}
	if name == "" {
		return "peer"
	}
	return name
}

// mountsOf are the shares as the endpoint's privileged stage mounts them.
func mountsOf(shares []Share) []tunnel.MountSpec {
	var out []tunnel.MountSpec
	for _, s := range shares {
		out = append(out, tunnel.MountSpec{Name: s.Name, ReadOnly: s.ReadOnly})
	}
	return out
}

func consentFiles(files []control.FileRef) []consent.File {
	var out []consent.File
	for _, f := range files {
		out = append(out, consent.File{Name: f.Name, Folder: f.Folder, ReadOnly: f.ReadOnly})
	}
	return out
}

// appCommand is the app's argv with the files' paths, or the refusal
// the requester gets when the app cannot open them.
func appCommand(app catalog.App, paths []string) ([]string, error) {
	argv, err := app.Command(paths)
	switch {
	case errors.Is(err, catalog.ErrNoFiles):
		return nil, control.Refuse(control.CodeBadRequest, fmt.Sprintf("%s does not open files (its command line takes none)", app.Name))
	case errors.Is(err, catalog.ErrOneFile):
		return nil, control.Refuse(control.CodeBadRequest, fmt.Sprintf("%s opens one file at a time", app.Name))
	case err != nil:
		return nil, control.Refuse(control.CodeBadRequest, err.Error())
	}
	return argv, nil
}

// canBringFiles refuses launches with files on a host without sshfs (the
// sandbox's /usr is the host's).
var canBringFiles = func() error {
	if _, err := exec.LookPath(tunnel.DefaultSSHFS); err != nil {
		return control.Refuse(control.CodeSandboxFailed, "this host cannot bring your files into its apps: sshfs is not installed there")
	}
	return nil
}

// LaunchWith is Launch bringing the requester's files (control.FilesHandler).
func (h *Host) LaunchWith(ctx context.Context, p control.Peer, appID string, files []control.FileRef, progress func(string)) (*control.Grant, error) {
	return h.launch(ctx, p, appID, files, progress)
}

var _ control.FilesHandler = (*Host)(nil)

// Folder is a folder the requester brings.
type Folder struct {
	Path     string
	ReadOnly bool
}

// ErrNoFileSharing is Run's error when the host granted the launch
// without bringing the files (an eBrainPool from before files could be
// brought): the app is not run.
var ErrNoFileSharing = errors.New("the host's eBrainPool cannot open your files (it is an older version): the app was not started")

// FileRefs are what a launch names: the files by their names in the
// share (unique base names, tunnel.FileNames), then each folder by its
// base name.
func FileRefs(files []string, folders []Folder) []control.FileRef {
	var out []control.FileRef
	for _, n := range tunnel.FileNames(files) {
		out = append(out, control.FileRef{Name: n})
	}
	for _, f := range folders {
		name := path.Base(strings.TrimRight(f.Path, "/"))
		if name == "/" || name == "." || name == "" {
			name = "folder"
		}
		out = append(out, control.FileRef{Name: name, Folder: true, ReadOnly: f.ReadOnly})
	}
	return out
}

// clientShares are the shares the requester serves for a grant, in the
// host's order (the files, then each folder), under the names it gave.
func clientShares(g *control.Grant, files []string, folders []Folder) ([]tunnel.Share, error) {
	want := len(folders)
	if len(files) > 0 {
		want++
	}
	if want == 0 {
		return nil, nil
	}
	if len(g.Shares) != want {
		if len(g.Shares) == 0 {
			return nil, ErrNoFileSharing
		}
		return nil, fmt.Errorf("the host's grant names %d shares for the %d brought", len(g.Shares), want)
	}
	var out []tunnel.Share
	i := 0
	if len(files) > 0 {
		out = append(out, tunnel.Share{Name: g.Shares[0], Files: files})
		i = 1
	}
	for _, f := range folders {
		out = append(out, tunnel.Share{Name: g.Shares[i], Dir: f.Path, ReadOnly: f.ReadOnly})
		i++
	}
	return out, nil
}
