package testbed

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
)

// Iface is the name of a host's network interface inside its namespace.
const Iface = "ebp0"

// Host is one simulated machine of a test bed.
type Host struct {
	Name   string       // host name, also avahi's host-name: "host1", "host2", ...
	Index  int          // 1-based
	Netns  string       // network namespace name (ip netns)
	Iface  string       // the host's interface inside Netns
	IP     netip.Addr   // IPv4; with Options.IPv6Only the link-local fe80::N (on Iface)
	Prefix netip.Prefix // IP with the LAN's prefix length
	Subnet int          // which LAN the host is on, from 1 (Options.Subnets)
	Dir    string       // host directory in the root mount namespace

	mu     sync.Mutex
	holder *proc // keeps the host's mount and UTS namespaces alive
	dbus   *proc
	avahi  *proc
}

func (b *Bed) addHost(ctx context.Context, i int) (*Host, error) {
	subnet := (i-1)%b.opts.Subnets + 1
	ip := b.subnet(subnet).Addr().As4()
	ip[3] = byte(10 + i)
	addr := netip.AddrFrom4(ip)
	prefix := netip.PrefixFrom(addr, b.opts.Subnet.Bits())
	if b.opts.IPv6Only {
		addr = netip.AddrFrom16([16]byte{0xfe, 0x80, 14: byte(i >> 8), 15: byte(i)})
		prefix = netip.PrefixFrom(addr, 64)
	}
	h := &Host{
		Name:   "host" + strconv.Itoa(i),
		Index:  i,
		Netns:  b.ID + "-" + strconv.Itoa(i),
		Iface:  Iface,
		IP:     addr,
		Prefix: prefix,
		Subnet: subnet,
		Dir:    filepath.Join(b.Dir, "host"+strconv.Itoa(i)),
	}
	for _, d := range []string{"run/dbus", "run/avahi-daemon", "empty"} {
		if err := os.MkdirAll(filepath.Join(h.Dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("host %s: %w", h.Name, err)
		}
	}
	files := map[string]string{
		"system-bus.conf": busConfig,
		"avahi.conf":      avahiConfig(h.Name, h.Iface, !b.opts.IPv6Only, b.opts.IPv6, b.opts.DNS),
	}
	if b.opts.DNS {
		files["resolv.conf"] = "nameserver " + b.dnsIP().String() + "\n"
	}
	for name, content := range files {
		if err := os.WriteFile(h.path(name), []byte(content), 0o644); err != nil {
			return nil, fmt.Errorf("host %s: %w", h.Name, err)
		}
	}
	if err := run(ctx, "ip", "netns", "add", h.Netns); err != nil {
		return nil, fmt.Errorf("host %s: %w", h.Name, err)
	}
	ipv6 := "echo 0 > /proc/sys/net/ipv6/conf/all/accept_dad; echo 0 > /proc/sys/net/ipv6/conf/default/accept_dad"
	if !b.opts.IPv6 {
		ipv6 = "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo 1 > /proc/sys/net/ipv6/conf/default/disable_ipv6"
	}
	peer := "h" + strconv.Itoa(i)
	var nodad []string
	if h.IP.Is6() {
		nodad = []string{"nodad"} // usable at once
	}
	steps := [][]string{
		{"ip", "-n", h.Netns, "link", "set", "lo", "up"},
		{"ip", "netns", "exec", h.Netns, "sh", "-c", ipv6},
		{"ip", "-n", h.Netns, "link", "add", h.Iface, "type", "veth", "peer", "name", peer, "netns", b.LANs[subnet-1]},
		{"ip", "-n", b.LANs[subnet-1], "link", "set", peer, "master", "br0", "up"},
		append([]string{"ip", "-n", h.Netns, "addr", "add", h.Prefix.String(), "dev", h.Iface}, nodad...),
		{"ip", "-n", h.Netns, "link", "set", h.Iface, "up"},
	}
	if r := b.RouterIP(subnet); r.IsValid() {
		steps = append(steps, []string{"ip", "-n", h.Netns, "route", "add", "default", "via", r.String()})
	}
	for _, s := range steps {
		if err := run(ctx, s...); err != nil {
			return h, fmt.Errorf("host %s network: %w", h.Name, err)
		}
	}
	return h, nil
}

// boot starts the namespace holder, the system bus and, if asked, avahi.
func (h *Host) boot(ctx context.Context, avahi bool) error {
	// The holder enters the network namespace, makes a private mount and UTS
	// namespace, puts the host directory's run/ on /run, hides the machine's
	// static avahi services, and sleeps; everything else joins it with nsenter.
	script := `set -e
mount --bind "$1/run" /run
if [ -d /etc/avahi/services ]; then mount --bind "$1/empty" /etc/avahi/services; fi
if [ -f "$1/resolv.conf" ]; then mount --bind "$1/resolv.conf" /etc/resolv.conf; fi
hostname "$2"
echo testbed-holder-ready
exec sleep infinity`
	// nsenter, not `ip netns exec`: the latter remounts /sys, which hides
	// the cgroup hierarchies the sandboxes of programs on the host need.
	cmd := exec.Command("nsenter", "--net=/run/netns/"+h.Netns, "--",
		"unshare", "--mount", "--uts", "--propagation", "private", "--",
		"sh", "-c", script, "holder", h.Dir, h.Name)
	holder, err := startProc(h.Name+" holder", cmd, h.path("holder.log"), "testbed-holder-ready", 10*time.Second)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.holder = holder
	h.mu.Unlock()

	bus, err := startProc(h.Name+" dbus-daemon", h.Command(context.Background(),
		"dbus-daemon", "--config-file="+h.path("system-bus.conf"), "--nofork", "--nopidfile", "--nosyslog", "--print-address=1"),
		h.path("dbus.log"), "unix:path=", 10*time.Second)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.dbus = bus
	h.mu.Unlock()
	if avahi {
		return h.StartAvahi(ctx)
	}
	return nil
}

func (h *Host) path(name string) string { return filepath.Join(h.Dir, name) }

// RunDir is the host's /run as seen from the root mount namespace.
func (h *Host) RunDir() string { return h.path("run") }

// BusSocket is the path of the host's system bus socket in the root mount
// namespace.
func (h *Host) BusSocket() string { return filepath.Join(h.RunDir(), "dbus", "system_bus_socket") }

// BusAddress is the D-Bus address of the host's system bus, usable from the
// root namespace.
func (h *Host) BusAddress() string { return "unix:path=" + h.BusSocket() }

// DialBus opens a new private connection to the host's system bus.
func (h *Host) DialBus(ctx context.Context) (*dbus.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	conn, err := dbus.Connect(h.BusAddress())
	if err != nil {
		return nil, fmt.Errorf("connecting to %s system bus: %w", h.Name, err)
	}
	return conn, nil
}

// Command returns a command that runs argv inside the host: in its network
// namespace, with its /run, its host name and its system bus.
func (h *Host) Command(ctx context.Context, argv ...string) *exec.Cmd {
	h.mu.Lock()
	holder := h.holder
	h.mu.Unlock()
	pid := "0"
	if holder != nil {
		pid = strconv.Itoa(holder.pid())
	}
	args := append([]string{"--target", pid, "--mount", "--net", "--uts", "--"}, argv...)
	cmd := exec.CommandContext(ctx, "nsenter", args...)
	cmd.Env = append(os.Environ(), "DBUS_SYSTEM_BUS_ADDRESS=unix:path=/run/dbus/system_bus_socket")
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Exec runs argv inside the host and returns its combined output.
func (h *Host) Exec(ctx context.Context, argv ...string) ([]byte, error) {
	out, err := h.Command(ctx, argv...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("%s: %v: %w: %s", h.Name, argv, err, out)
	}
	return out, nil
}

// StartAvahi starts the host's avahi-daemon and waits until it has finished
// starting up.
func (h *Host) StartAvahi(ctx context.Context) error {
	h.mu.Lock()
	running := h.avahi
	h.mu.Unlock()
	if running != nil && !running.exited() {
		return fmt.Errorf("%s: avahi-daemon already running (pid %d)", h.Name, running.pid())
	}
	// A pid file left by a killed daemon would make avahi refuse to start.
	if err := os.Remove(filepath.Join(h.RunDir(), "avahi-daemon", "pid")); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s: %w", h.Name, err)
	}
	timeout := 20 * time.Second
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < timeout {
		timeout = time.Until(dl)
	}
	p, err := startProc(h.Name+" avahi-daemon", h.Command(context.Background(),
		"avahi-daemon", "--no-drop-root", "--no-chroot", "--no-rlimits", "-f", h.path("avahi.conf")),
		h.path("avahi.log"), "Server startup complete", timeout)
	if err != nil {
		return err
	}
	h.mu.Lock()
	h.avahi = p
	h.mu.Unlock()
	return nil
}

// StopAvahi stops the host's avahi-daemon with SIGTERM (it says goodbye on
// the network) and waits for it to exit.
func (h *Host) StopAvahi() error {
	h.mu.Lock()
	p := h.avahi
	h.avahi = nil
	h.mu.Unlock()
	return p.stop()
}

// KillAvahi kills the host's avahi-daemon with SIGKILL: a crash, no goodbye.
func (h *Host) KillAvahi() error {
	h.mu.Lock()
	p := h.avahi
	h.avahi = nil
	h.mu.Unlock()
	if p == nil || p.exited() {
		return nil
	}
	if err := p.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("%s: killing avahi-daemon: %w", h.Name, err)
	}
	<-p.done
	return nil
}

// AvahiPID returns the pid of the running avahi-daemon, or 0.
func (h *Host) AvahiPID() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.avahi == nil || h.avahi.exited() {
		return 0
	}
	return h.avahi.pid()
}

// AvahiLog returns the end of the host's avahi-daemon log.
func (h *Host) AvahiLog() string { return tail(h.path("avahi.log"), 8000) }

// Down takes the host's link down.
func (h *Host) Down(ctx context.Context) error {
	return run(ctx, "ip", "-n", h.Netns, "link", "set", h.Iface, "down")
}

// Up brings the host's link up again.
func (h *Host) Up(ctx context.Context) error {
	return run(ctx, "ip", "-n", h.Netns, "link", "set", h.Iface, "up")
}

// shutdown stops the host's daemons and holder, kills anything else still
// running in its network namespace and removes the namespace.
func (h *Host) shutdown(ctx context.Context) error {
	h.mu.Lock()
	procs := []*proc{h.avahi, h.dbus, h.holder}
	h.mu.Unlock()
	var errs []error
	for _, p := range procs {
		if p != nil {
			errs = append(errs, p.stop())
		}
	}
	errs = append(errs, removeNetns(ctx, h.Netns))
	return errors.Join(errs...)
}
