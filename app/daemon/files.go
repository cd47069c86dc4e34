package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ebrainpool/ebrainpool/app/catalog"
	"github.com/ebrainpool/ebrainpool/app/control"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/discovery"
	"github.com/ebrainpool/ebrainpool/app/session"
)

var _ dbusapi.FilesBackend = (*Daemon)(nil)

// fileLabel is how a brought file or folder is listed: its name, a
// folder's ending in "/", " (read-only)" after a read-only one.
func fileLabel(name string, folder, ro bool) string {
	if folder {
		name += "/"
	}
	if ro {
		name += " (read-only)"
	}
	return name
}

// fileNames are the labels of what a launch brings.
func fileNames(files []string, folders []session.Folder) []string {
	var out []string
	for _, r := range session.FileRefs(files, folders) {
		out = append(out, fileLabel(r.Name, r.Folder, r.ReadOnly))
	}
	return out
}

// checkFiles makes the paths absolute and checks that each file is a
// regular file and each folder a directory, now.
func checkFiles(files []string, folders []dbusapi.Folder) ([]string, []session.Folder, error) {
	var fs []string
	for _, f := range files {
		p, err := filepath.Abs(f)
		if err != nil {
			return nil, nil, err
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, nil, fmt.Errorf("cannot open %s in a peer's app: %w", f, err)
		}
		if !st.Mode().IsRegular() {
			return nil, nil, fmt.Errorf("cannot open %s in a peer's app: not a regular file (give folders as folders)", f)
		}
		fs = append(fs, p)
	}
	var ds []session.Folder
	for _, d := range folders {
		p, err := filepath.Abs(d.Path)
		if err != nil {
			return nil, nil, err
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, nil, fmt.Errorf("cannot bring %s: %w", d.Path, err)
		}
		if !st.IsDir() {
			return nil, nil, fmt.Errorf("cannot bring %s: not a folder", d.Path)
		}
		ds = append(ds, session.Folder{Path: p, ReadOnly: d.ReadOnly})
	}
	if n := len(fs) + len(ds); n > control.MaxFiles {
		return nil, nil, fmt.Errorf("%d files and folders: a launch brings at most %d", n, control.MaxFiles)
	}
	return fs, ds, nil
}

// LaunchWith is Launch bringing files (their paths are the app's
// arguments) and folders (in the app's home): served from here to the
// peer's sandbox over the session's connection, nothing else.
func (d *Daemon) LaunchWith(peer, app string, files []string, folders []dbusapi.Folder) (string, error) {
	fs, ds, err := checkFiles(files, folders)
	if err != nil {
		return "", err
	}
	return d.launch(peer, app, fs, ds)
}

// ErrNoApp is AppsForFiles' error when no peer shares an app for the files.
var ErrNoApp = errors.New("no shared app opens these files")

// AppsForFiles lists the apps the peer ("" every peer) shares that open
// every one of the files, by their MIME types; peers that do not answer
// are left out. None is ErrNoApp, saying the files' types.
func (d *Daemon) AppsForFiles(ctx context.Context, peer string, files []string) ([]dbusapi.Candidate, error) {
	if len(files) == 0 {
		return nil, errors.New("no files given")
	}
	var types [][]string
	var named []string
	for _, f := range files {
		m := catalog.DetectMIME(f)
		types = append(types, m.Types())
		named = append(named, fmt.Sprintf("%s (%s)", filepath.Base(f), m.Type))
	}
	var peers []discovery.Peer
	if peer != "" {
		p, err := d.Resolve(peer)
		if err != nil {
			return nil, err
		}
		peers = []discovery.Peer{p}
	} else {
		peers = d.peers()
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var mu sync.Mutex
	var out []dbusapi.Candidate
	var errs []error
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			apps, kept, err := d.catalogOf(ctx, p)
			cands := candidates(p, apps, types)
			if err == nil && kept && len(cands) == 0 {
				// An app the peer shared since may open them: ask it.
				apps, err = d.fetchCatalog(ctx, p)
				cands = candidates(p, apps, types)
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			out = append(out, cands...)
		}()
	}
	wg.Wait()
	sort.Slice(out, func(i, j int) bool {
		if out[i].PeerName != out[j].PeerName {
			return out[i].PeerName < out[j].PeerName
		}
		return out[i].AppName < out[j].AppName
	})
	if len(out) == 0 {
		if peer != "" && len(errs) > 0 {
			return nil, errs[0]
		}
		where := "any peer"
		if peer != "" {
			where = peers[0].Name
		}
		return nil, &dbusapi.LaunchError{Outcome: dbusapi.OutcomeNotShared,
			Message: fmt.Sprintf("no app shared by %s opens %s", where, strings.Join(named, ", "))}
	}
	return out, nil
}

// candidates are the peer's apps that open every file (types: each
// file's MIME types).
func candidates(p discovery.Peer, apps []control.AppInfo, types [][]string) []dbusapi.Candidate {
	var out []dbusapi.Candidate
	for _, a := range apps {
		app := catalog.App{MimeTypes: a.MimeTypes}
		all := len(a.MimeTypes) > 0
		for _, t := range types {
			all = all && app.Handles(t...)
		}
		if all {
			out = append(out, dbusapi.Candidate{Peer: string(p.Fingerprint), PeerName: p.Name, App: a.ID, AppName: a.Name})
		}
	}
	return out
}

// catalogOf is a peer's catalog: the one it gave in the last
// catalogFresh (kept true), else asked for (a control connection of its
// own, about 50 ms: the most of what `open` took to pick the app before
// the launch).
func (d *Daemon) catalogOf(ctx context.Context, p discovery.Peer) (apps []control.AppInfo, kept bool, err error) {
	if apps, ok := d.cats.fresh(string(p.Fingerprint), time.Now()); ok {
		return apps, true, nil
	}
	apps, err = d.fetchCatalog(ctx, p)
	return apps, false, err
}

// fetchCatalog asks the peer for its catalog and remembers it for
// catalogOf.
func (d *Daemon) fetchCatalog(ctx context.Context, p discovery.Peer) ([]control.AppInfo, error) {
	t, err := d.target(p)
	if err != nil {
		return nil, err
	}
	c, err := control.Dial(ctx, t.Addr, control.ClientConfig{Identity: d.id.Signer(), Name: d.Settings().DisplayName, Expect: t.Fingerprint, Verify: d.verify(p)})
	if err != nil {
		d.cats.drop(string(p.Fingerprint))
		return nil, failure(p.Name, err)
	}
	defer c.Close()
	apps, err := c.Catalog(ctx)
	if err != nil {
		d.cats.drop(string(p.Fingerprint))
		return nil, failure(p.Name, err)
	}
	d.cats.keep(string(p.Fingerprint), apps, time.Now())
	return apps, nil
}
