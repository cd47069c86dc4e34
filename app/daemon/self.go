package daemon

import (
	"net"
	"sort"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/discovery"
)

// discoveryStatus publishes a change of the discovery's state (its
// OnStatus).
func (d *Daemon) discoveryStatus(st discovery.Status) {
	d.log.Info("discovery", "state", st.State, "err", st.Err)
	d.publish(Event{Kind: EventDiscoveryChanged, Discovery: dbusapi.Discovery{State: dbusapi.DiscoveryState(st.State), Err: st.Err}})
}

// Discovery says whether peers on the network are found, and if not, why.
func (d *Daemon) Discovery() dbusapi.Discovery {
	if d.opts.NoDiscovery {
		return dbusapi.Discovery{State: dbusapi.DiscoveryDisabled}
	}
	d.mu.Lock()
	svc := d.disc.svc
	d.mu.Unlock()
	if svc == nil {
		return dbusapi.Discovery{State: dbusapi.DiscoveryStarting}
	}
	st := svc.Status()
	return dbusapi.Discovery{State: dbusapi.DiscoveryState(st.State), Err: st.Err}
}

// Self is this user's name, fingerprint and addresses as peers see them.
func (d *Daemon) Self() dbusapi.Self {
	fp := d.id.Fingerprint()
	s := dbusapi.Self{Name: d.Settings().DisplayName, Fingerprint: string(fp), Short: fp.Short(), Port: d.ControlAddr().Port}
	if ip := d.ControlAddr().IP; ip != nil && !ip.IsUnspecified() {
		s.Addresses = []string{ip.String()}
		return s
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return s
	}
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.IsLoopback() || n.IP.IsLinkLocalUnicast() || n.IP.IsLinkLocalMulticast() {
			continue
		}
		s.Addresses = append(s.Addresses, n.IP.String())
	}
	// IPv4 first: the one a colleague types.
	sort.SliceStable(s.Addresses, func(i, j int) bool {
		return net.ParseIP(s.Addresses[i]).To4() != nil && net.ParseIP(s.Addresses[j]).To4() == nil
	})
	return s
}
