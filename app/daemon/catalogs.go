package daemon

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ebrainpool/ebrainpool/app/control"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// Lists that stay current: the daemon remembers the app list each peer
// last gave (whoever asked: the tray, the peer browser, `ebrainpool
// apps`), asks the peers it has lists of again every catalogRefresh, and
// publishes EventPeerAppsChanged when a list differs from the one before,
// so every view shows what the peer shares now (a peer has no way to push
// its list: requests are the only connections).

// catalogRefresh is how often the known app lists are fetched again.
var catalogRefresh = 30 * time.Second

// catalogFresh is how long a peer's catalog (its apps with their MIME
// types) is used without asking the peer again to pick an app for files
// (AppsForFiles: `open`, the peer browser's Open a file…): a little
// longer than catalogRefresh, so the catalogs of the peers whose lists
// are kept stay fresh (as old as the lists the tray and the peer browser
// show). Every fetch renews it, the lists' own (Apps, the refresh)
// included; a failed one, or the peer going away, drops it; a kept
// catalog with no app for the files is asked for again (the peer may
// have shared one since).
var catalogFresh = catalogRefresh + 5*time.Second

// catalogs are the peers' last app lists, summed up, and their catalogs
// as they came, with when (by fingerprint).
type catalogs struct {
	mu   sync.Mutex
	sums map[string]string
	full map[string]keptCatalog
}

// keptCatalog is a peer's catalog and when it came.
type keptCatalog struct {
	apps []control.AppInfo
	at   time.Time
}

// keep remembers the catalog a peer gave at now.
func (c *catalogs) keep(fp string, apps []control.AppInfo, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.full == nil {
		c.full = map[string]keptCatalog{}
	}
	c.full[fp] = keptCatalog{apps: apps, at: now}
}

// fresh is the peer's catalog if it came within catalogFresh of now.
func (c *catalogs) fresh(fp string, now time.Time) ([]control.AppInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	k, ok := c.full[fp]
	if !ok || now.Sub(k.at) >= catalogFresh || now.Before(k.at) {
		return nil, false
	}
	return k.apps, true
}

// drop forgets the peer's catalog.
func (c *catalogs) drop(fp string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.full, fp)
}

// catalogSum sums up what a list shows: each app's ID, name, comment and
// whether it has an icon.
func catalogSum(apps []dbusapi.App) string {
	var b strings.Builder
	for _, a := range apps {
		fmt.Fprintf(&b, "%q %q %q %t\n", a.ID, a.Name, a.Comment, len(a.Icon) > 0)
	}
	return b.String()
}

// noteApps records the list a peer gave and publishes
// EventPeerAppsChanged when it differs from the last one.
func (d *Daemon) noteApps(fp string, apps []dbusapi.App) {
	sum := catalogSum(apps)
	d.cats.mu.Lock()
	if d.cats.sums == nil {
		d.cats.sums = map[string]string{}
	}
	prev, known := d.cats.sums[fp]
	d.cats.sums[fp] = sum
	d.cats.mu.Unlock()
	if known && prev != sum {
		d.log.Debug("a peer's shared apps changed", "peer", fp, "apps", len(apps))
		d.publish(Event{Kind: EventPeerAppsChanged, Peer: dbusapi.Peer{Fingerprint: fp}, Apps: apps})
	}
}

// forgetApps drops a peer's list (it went away).
func (d *Daemon) forgetApps(fp string) {
	d.cats.mu.Lock()
	delete(d.cats.sums, fp)
	delete(d.cats.full, fp)
	d.cats.mu.Unlock()
}

// refreshCatalogs asks the peers with a known list for it again every
// catalogRefresh until ctx ends (Apps notes what comes back).
func (d *Daemon) refreshCatalogs(ctx context.Context) {
	t := time.NewTicker(catalogRefresh)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.cats.mu.Lock()
		fps := make([]string, 0, len(d.cats.sums))
		for fp := range d.cats.sums {
			fps = append(fps, fp)
		}
		d.cats.mu.Unlock()
		for _, fp := range fps {
			if _, err := d.Apps(ctx, fp); err != nil {
				d.log.Debug("refreshing a peer's apps", "peer", fp, "err", err)
				if _, gone := d.Resolve(fp); gone != nil {
					d.forgetApps(fp) // no longer a peer
				}
			}
		}
	}
}
