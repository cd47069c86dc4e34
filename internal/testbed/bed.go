package testbed

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// DefaultPrefix starts the name of everything a test bed creates.
const DefaultPrefix = "ebp-tb"

// Options describe a test bed.
type Options struct {
	// Hosts is the number of hosts, at least 1.
	Hosts int
	// Prefix starts every namespace and directory name; DefaultPrefix if empty.
	Prefix string
	// Subnet is the hosts' IPv4 network; host i gets address .10+i. Empty
	// means 10.203.N.0/24 with a random N. It only exists inside the bed.
	Subnet netip.Prefix
	// IPv6 gives hosts link-local IPv6 and lets avahi use it.
	IPv6 bool
	// IPv6Only (with IPv6) gives hosts no IPv4 address at all: each has
	// the link-local address fe80::N (N its index, Host.IP) besides the
	// kernel's own, and avahi uses IPv6 only. Not with Subnets.
	IPv6Only bool
	// Subnets, when more than 1, splits the hosts over that many LANs
	// (host i on LAN (i-1)%Subnets+1, each its own bridge) joined by a
	// router namespace that forwards unicast between them and no
	// multicast: mDNS does not cross, as between an office's VLANs. LAN k
	// is Subnet with its third byte plus k-1 (Subnet must be a /24); the
	// router is .1 on each and every host's default route.
	Subnets int
	// DNS adds a unicast DNS server (Bed.DNS, dnsmasq) on LAN 1 that
	// every host's resolv.conf names, and turns on avahi's wide-area
	// DNS-SD: for tests of browsing unicast domains.
	DNS bool
	// NoAvahi leaves avahi-daemon stopped; start it with Host.StartAvahi.
	NoAvahi bool
	// Logf, when set, receives progress messages.
	Logf func(format string, args ...any)
}

// Bed is a running test bed. Close it (New does it through t.Cleanup).
type Bed struct {
	ID  string
	Dir string
	LAN string // name of the network namespace holding the bridge (LAN 1's)
	// LANs are the namespaces of every LAN's bridge (just LAN without
	// Options.Subnets); Router joins them ("" with one LAN).
	LANs   []string
	Router string
	// DNS is the unicast DNS server (Options.DNS), or nil.
	DNS   *DNSServer
	Hosts []*Host
	// Ready is how long Start took.
	Ready time.Duration

	opts      Options
	closeOnce sync.Once
	closeErr  error
}

// New starts a test bed of n hosts with IPv6 enabled, or skips t (fails it
// under CI=true) when the machine cannot run one. It is closed when the test
// ends; on failure the daemons' logs are printed first.
func New(t testing.TB, n int) *Bed {
	t.Helper()
	return NewWithOptions(t, Options{Hosts: n, IPv6: true})
}

// NewWithOptions is New with explicit options.
func NewWithOptions(t testing.TB, opts Options) *Bed {
	t.Helper()
	Require(t)
	if opts.Logf == nil {
		opts.Logf = t.Logf
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := Start(ctx, opts)
	if err != nil {
		t.Fatalf("starting test bed: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, h := range b.Hosts {
				t.Logf("%s avahi-daemon log:\n%s", h.Name, tail(h.path("avahi.log"), 4000))
			}
		}
		if err := b.Close(); err != nil {
			t.Errorf("closing test bed: %v", err)
		}
	})
	return b
}

// Start creates and starts a test bed. On error everything made so far is
// removed again.
func Start(ctx context.Context, opts Options) (b *Bed, err error) {
	start := time.Now()
	if opts.Hosts < 1 {
		return nil, fmt.Errorf("test bed needs at least one host, got %d", opts.Hosts)
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	rnd := make([]byte, 3)
	if _, err := rand.Read(rnd); err != nil {
		return nil, fmt.Errorf("test bed id: %w", err)
	}
	if !opts.Subnet.IsValid() {
		third := rnd[0]
		if opts.Subnets > 1 {
			third %= 256 - 16 // room for the other subnets after it
		}
		opts.Subnet = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 203, third, 0}), 24)
	}
	if !opts.Subnet.Addr().Is4() || opts.Subnet.Bits() > 24 {
		return nil, fmt.Errorf("test bed subnet %s: want IPv4, /24 or larger", opts.Subnet)
	}
	if opts.Subnets < 1 {
		opts.Subnets = 1
	}
	if opts.IPv6Only && (!opts.IPv6 || opts.Subnets > 1) {
		return nil, errors.New("test bed: IPv6Only needs IPv6 and one subnet (the router forwards IPv4 only)")
	}
	if opts.Subnets > 1 && (opts.Subnet.Bits() != 24 || int(opts.Subnet.Addr().As4()[2])+opts.Subnets > 256 || opts.Subnets > 9) {
		return nil, fmt.Errorf("test bed: %d subnets need a /24 with room after it, not %s", opts.Subnets, opts.Subnet)
	}
	if opts.Hosts > 200 {
		return nil, fmt.Errorf("test bed: %d hosts is too many", opts.Hosts)
	}
	if err := CleanupStale(ctx, opts.Prefix, opts.Logf); err != nil {
		opts.Logf("cleaning up stale test beds: %v", err)
	}

	id := hex.EncodeToString(rnd)
	name := opts.Prefix + "-" + id
	b = &Bed{ID: name, Dir: filepath.Join(os.TempDir(), name), LAN: name + "-lan", opts: opts}
	b.LANs = []string{b.LAN}
	for k := 2; k <= opts.Subnets; k++ {
		b.LANs = append(b.LANs, name+"-lan"+strconv.Itoa(k))
	}
	if opts.Subnets > 1 {
		b.Router = name + "-router"
	}
	if err := os.Mkdir(b.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("test bed directory: %w", err)
	}
	if err := writeOwner(b.Dir); err != nil {
		os.RemoveAll(b.Dir)
		return nil, err
	}
	made := b // the returns below set b to nil before this runs
	defer func() {
		if err != nil {
			if cerr := made.Close(); cerr != nil {
				err = errors.Join(err, cerr)
			}
			b = nil
		}
	}()

	for _, lan := range b.LANs {
		if err := b.setupLAN(ctx, lan); err != nil {
			return nil, err
		}
	}
	if err := b.setupRouter(ctx); err != nil {
		return nil, err
	}
	if err := b.setupDNS(ctx); err != nil {
		return nil, err
	}
	for i := 1; i <= opts.Hosts; i++ {
		h, err := b.addHost(ctx, i)
		if h != nil {
			b.Hosts = append(b.Hosts, h)
		}
		if err != nil {
			return nil, err
		}
	}
	errs := make([]error, len(b.Hosts))
	var wg sync.WaitGroup
	for i, h := range b.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = h.boot(ctx, !opts.NoAvahi)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	b.Ready = time.Since(start)
	where := fmt.Sprintf("%s (%d subnets)", opts.Subnet, opts.Subnets)
	if opts.IPv6Only {
		where = "link-local IPv6 only"
	}
	opts.Logf("test bed %s: %d hosts on %s up in %v", b.ID, len(b.Hosts), where, b.Ready.Round(time.Millisecond))
	return b, nil
}

func (b *Bed) setupLAN(ctx context.Context, lan string) error {
	if err := run(ctx, "ip", "netns", "add", lan); err != nil {
		return err
	}
	steps := [][]string{
		{"ip", "-n", lan, "link", "set", "lo", "up"},
		{"ip", "netns", "exec", lan, "sh", "-c", "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"},
		{"ip", "-n", lan, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"},
		{"ip", "-n", lan, "link", "set", "br0", "up"},
	}
	for _, s := range steps {
		if err := run(ctx, s...); err != nil {
			return fmt.Errorf("setting up lan namespace: %w", err)
		}
	}
	return nil
}

// subnet is LAN k's prefix (k from 1).
func (b *Bed) subnet(k int) netip.Prefix {
	a := b.opts.Subnet.Addr().As4()
	a[2] += byte(k - 1)
	return netip.PrefixFrom(netip.AddrFrom4(a), b.opts.Subnet.Bits())
}

// RouterIP is the router's address on LAN k (from 1); invalid with one
// LAN.
func (b *Bed) RouterIP(k int) netip.Addr {
	if b.Router == "" {
		return netip.Addr{}
	}
	a := b.subnet(k).Addr().As4()
	a[3] = 1
	return netip.AddrFrom4(a)
}

// setupRouter joins the LANs with a router namespace: IPv4 forwarding on,
// no multicast routing (no daemon asks the kernel for it), so unicast
// crosses and mDNS does not.
func (b *Bed) setupRouter(ctx context.Context) error {
	if b.Router == "" {
		return nil
	}
	if err := run(ctx, "ip", "netns", "add", b.Router); err != nil {
		return err
	}
	steps := [][]string{
		{"ip", "-n", b.Router, "link", "set", "lo", "up"},
		{"ip", "netns", "exec", b.Router, "sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward; echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"},
	}
	for k, lan := range b.LANs {
		r, l := "r"+strconv.Itoa(k+1), "rb"+strconv.Itoa(k+1)
		steps = append(steps,
			[]string{"ip", "-n", b.Router, "link", "add", r, "type", "veth", "peer", "name", l, "netns", lan},
			[]string{"ip", "-n", lan, "link", "set", l, "master", "br0", "up"},
			[]string{"ip", "-n", b.Router, "addr", "add", netip.PrefixFrom(b.RouterIP(k+1), b.opts.Subnet.Bits()).String(), "dev", r},
			[]string{"ip", "-n", b.Router, "link", "set", r, "up"},
		)
	}
	for _, s := range steps {
		if err := run(ctx, s...); err != nil {
			return fmt.Errorf("setting up the router: %w", err)
		}
	}
	return nil
}

// Host returns host i, counting from 1.
func (b *Bed) Host(i int) *Host { return b.Hosts[i-1] }

// Close stops every process the bed started and removes its namespaces and
// directory. It is safe to call more than once.
func (b *Bed) Close() error {
	b.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var errs []error
		for _, h := range b.Hosts {
			errs = append(errs, h.shutdown(ctx))
		}
		if b.DNS != nil {
			errs = append(errs, b.DNS.shutdown(), removeNetns(ctx, b.DNS.Netns))
		}
		for _, lan := range b.LANs {
			errs = append(errs, removeNetns(ctx, lan))
		}
		if b.Router != "" {
			errs = append(errs, removeNetns(ctx, b.Router))
		}
		if err := os.RemoveAll(b.Dir); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", b.Dir, err))
		}
		b.closeErr = errors.Join(errs...)
	})
	return b.closeErr
}

// run runs a command in the root namespace, returning its output in errors.
func run(ctx context.Context, argv ...string) error {
	_, err := output(ctx, argv...)
	return err
}

func output(ctx context.Context, argv ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}
