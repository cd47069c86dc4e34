package dbusapi

import (
	"context"
	"errors"
	"path/filepath"

	"github.com/godbus/dbus/v5"
)

// Folder is a folder a launch brings into the app's home; ReadOnly
// refuses the app every change in it.
type Folder struct {
	Path     string
	ReadOnly bool
}

// Candidate is an app of a peer that opens the given files (by their
// MIME types), as AppsForFiles lists them.
type Candidate struct {
	Peer     string // fingerprint
	PeerName string
	App      string // desktop ID
	AppName  string
}

// FilesBackend is a Backend whose launches bring the user's files:
// LaunchWith is Launch with files the app opens (absolute paths here)
// and folders that appear in its home; AppsForFiles lists the apps of a
// peer ("" every peer) that open all the files.
type FilesBackend interface {
	Backend
	LaunchWith(peer, app string, files []string, folders []Folder) (string, error)
	AppsForFiles(ctx context.Context, peer string, files []string) ([]Candidate, error)
}

// Labels names the files and folders a launch brings as the daemon lists
// them (Session.Files, Request.Files): a file's name, a folder's ending in
// "/", " (read-only)" after a read-only one.
func Labels(files []string, folders []Folder) []string {
	var out []string
	for _, f := range files {
		out = append(out, filepath.Base(f))
	}
	for _, d := range folders {
		n := filepath.Base(d.Path) + "/"
		if d.ReadOnly {
			n += " (read-only)"
		}
		out = append(out, n)
	}
	return out
}

var errNoFiles = errors.New("this eBrainPool cannot bring files into apps")

// LaunchWith is Launch bringing files and folders: the app gets the files'
// paths as its arguments (as its Exec line's field codes say) and the
// folders in its home; only they are served to the peer, over the
// session's own connection. Progress and the end come as for Launch.
func (o object) LaunchWith(peer, app string, files []string, folders []Folder) (string, *dbus.Error) {
	fb, ok := o.b.(FilesBackend)
	if !ok {
		return "", dbusErr(errNoFiles)
	}
	id, err := fb.LaunchWith(peer, app, files, folders)
	return id, dbusErr(err)
}

// AppsForFiles lists the apps peers share that open every one of the
// files (their MIME types against each app's MimeType=); peer "" asks
// every peer, unreachable ones are left out.
func (o object) AppsForFiles(peer string, files []string) ([]Candidate, *dbus.Error) {
	fb, ok := o.b.(FilesBackend)
	if !ok {
		return nil, dbusErr(errNoFiles)
	}
	c, err := fb.AppsForFiles(context.Background(), peer, files)
	return c, dbusErr(err)
}

// LaunchWith asks the daemon to run app from peer with files and folders
// and returns the launch id at once.
func (c *Client) LaunchWith(ctx context.Context, peer, app string, files []string, folders []Folder) (string, error) {
	var id string
	if files == nil {
		files = []string{}
	}
	if folders == nil {
		folders = []Folder{}
	}
	return id, c.call(ctx, "LaunchWith", &id, peer, app, files, folders)
}

// AppsForFiles lists the apps of peer ("" every peer) that open the files.
func (c *Client) AppsForFiles(ctx context.Context, peer string, files []string) ([]Candidate, error) {
	var out []Candidate
	if err := c.call(ctx, "AppsForFiles", &out, peer, files); err != nil {
		return nil, err
	}
	return out, nil
}

// RunWith is Run bringing files and folders (see LaunchWith).
func (c *Client) RunWith(ctx context.Context, peer, app string, files []string, folders []Folder, detach bool, progress func(string)) (int, error) {
	if len(files) == 0 && len(folders) == 0 {
		return c.Run(ctx, peer, app, detach, progress)
	}
	return c.run(ctx, func() (string, error) { return c.LaunchWith(ctx, peer, app, files, folders) }, detach, progress)
}
