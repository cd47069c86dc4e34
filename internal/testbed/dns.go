package testbed

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// DNSServer is a test bed's unicast DNS server (Options.DNS): Debian's
// dnsmasq in a namespace of its own on LAN 1, authoritative for the
// records the test gives it (SetRecords), answering nothing else. Every
// host's /etc/resolv.conf names it and its avahi-daemon has wide-area
// DNS-SD on, so a browser of a unicast domain asks it.
type DNSServer struct {
	Netns string
	IP    netip.Addr
	dir   string

	mu   sync.Mutex
	proc *proc
}

// dnsIP is the DNS server's address on LAN 1 (.2; the router is .1).
func (b *Bed) dnsIP() netip.Addr {
	a := b.subnet(1).Addr().As4()
	a[3] = 2
	return netip.AddrFrom4(a)
}

// setupDNS makes the DNS server's namespace (dnsmasq starts with
// SetRecords).
func (b *Bed) setupDNS(ctx context.Context) error {
	if !b.opts.DNS {
		return nil
	}
	d := &DNSServer{Netns: b.ID + "-dns", IP: b.dnsIP(), dir: filepath.Join(b.Dir, "dns")}
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return err
	}
	if err := run(ctx, "ip", "netns", "add", d.Netns); err != nil {
		return err
	}
	b.DNS = d
	steps := [][]string{
		{"ip", "-n", d.Netns, "link", "set", "lo", "up"},
		{"ip", "netns", "exec", d.Netns, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"},
		{"ip", "-n", d.Netns, "link", "add", "dns0", "type", "veth", "peer", "name", "hdns", "netns", b.LANs[0]},
		{"ip", "-n", b.LANs[0], "link", "set", "hdns", "master", "br0", "up"},
		{"ip", "-n", d.Netns, "addr", "add", netip.PrefixFrom(d.IP, b.opts.Subnet.Bits()).String(), "dev", "dns0"},
		{"ip", "-n", d.Netns, "link", "set", "dns0", "up"},
	}
	if r := b.RouterIP(1); r.IsValid() {
		steps = append(steps, []string{"ip", "-n", d.Netns, "route", "add", "default", "via", r.String()})
	}
	for _, s := range steps {
		if err := run(ctx, s...); err != nil {
			return fmt.Errorf("setting up the DNS server: %w", err)
		}
	}
	return nil
}

// SetRecords (re)starts the DNS server authoritative for domain with
// records, dnsmasq option lines (ptr-record=, srv-host=, txt-record=,
// host-record=, ...). Nothing outside domain is answered or forwarded.
func (d *DNSServer) SetRecords(ctx context.Context, domain string, records []string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.proc != nil {
		if err := d.proc.stop(); err != nil {
			return err
		}
		d.proc = nil
	}
	conf := []string{
		"no-resolv", "no-hosts", "no-poll", "bind-interfaces", "listen-address=" + d.IP.String(),
		"local=/" + domain + "/", "log-queries", "log-facility=-",
	}
	conf = append(conf, records...)
	path := filepath.Join(d.dir, "dnsmasq.conf")
	if err := os.WriteFile(path, []byte(strings.Join(conf, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	cmd := exec.Command("ip", "netns", "exec", d.Netns, "dnsmasq", "--keep-in-foreground", "--conf-file="+path,
		"--pid-file="+filepath.Join(d.dir, "dnsmasq.pid"), "--user=root")
	p, err := startProc("dnsmasq", cmd, filepath.Join(d.dir, "dnsmasq.log"), "started, version", 10*time.Second)
	if err != nil {
		return fmt.Errorf("starting dnsmasq: %w (log: %s)", err, tail(filepath.Join(d.dir, "dnsmasq.log"), 2000))
	}
	d.proc = p
	return ctx.Err()
}

// Log is the end of the DNS server's log (its queries).
func (d *DNSServer) Log() string { return tail(filepath.Join(d.dir, "dnsmasq.log"), 8000) }

// shutdown stops dnsmasq.
func (d *DNSServer) shutdown() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.proc == nil {
		return nil
	}
	err := d.proc.stop()
	d.proc = nil
	return err
}
