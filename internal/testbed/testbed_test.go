package testbed

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBed(t *testing.T) {
	Require(t, "avahi-publish", "avahi-browse")
	b := New(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	for _, h := range b.Hosts {
		t.Run(h.Name, func(t *testing.T) {
			out, err := h.Exec(ctx, "hostname")
			if err != nil || strings.TrimSpace(string(out)) != h.Name {
				t.Errorf("hostname = %q, %v; want %s", out, err, h.Name)
			}
			out, err = h.Exec(ctx, "ip", "-4", "-o", "addr", "show", "dev", Iface)
			if err != nil || !strings.Contains(string(out), h.Prefix.String()) {
				t.Errorf("address: %q, %v; want %s", out, err, h.Prefix)
			}
			out, err = h.Exec(ctx, "sh", "-c", "ls /run")
			if err != nil || !strings.Contains(string(out), "avahi-daemon") || strings.Contains(string(out), "netns") {
				t.Errorf("/run inside host: %q, %v", out, err)
			}
			conn, err := h.DialBus(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			var owned bool
			if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, "org.freedesktop.Avahi").Store(&owned); err != nil || !owned {
				t.Errorf("org.freedesktop.Avahi on %s bus: owned=%v err=%v", h.Name, owned, err)
			}
		})
	}

	t.Run("mdns between hosts", func(t *testing.T) {
		pub := b.Host(1).Command(ctx, "avahi-publish", "-s", "tb-probe", "_ebp-tbprobe._tcp", "4242", "k=v")
		if err := pub.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { _ = pub.Process.Kill(); _ = pub.Wait() }()
		start := time.Now()
		for {
			out, _ := b.Host(2).Exec(ctx, "avahi-browse", "-rtp", "_ebp-tbprobe._tcp")
			if strings.Contains(string(out), b.Host(1).IP.String()) {
				t.Logf("host2 resolved host1's service in %v", time.Since(start).Round(time.Millisecond))
				break
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("host2 did not see host1's service; last output:\n%s", out)
			}
			time.Sleep(100 * time.Millisecond)
		}
	})

	t.Run("avahi restart", func(t *testing.T) {
		h := b.Host(3)
		old := h.AvahiPID()
		if err := h.StopAvahi(); err != nil {
			t.Fatal(err)
		}
		if h.AvahiPID() != 0 {
			t.Fatal("avahi still reported running")
		}
		if err := h.StartAvahi(ctx); err != nil {
			t.Fatal(err)
		}
		if p := h.AvahiPID(); p == 0 || p == old {
			t.Fatalf("avahi pid after restart = %d (before %d)", p, old)
		}
	})

	t.Run("link down and up", func(t *testing.T) {
		h := b.Host(2)
		if err := h.Down(ctx); err != nil {
			t.Fatal(err)
		}
		out, _ := h.Exec(ctx, "ip", "-o", "link", "show", Iface)
		if !strings.Contains(string(out), "state DOWN") {
			t.Errorf("after Down: %s", out)
		}
		if err := h.Up(ctx); err != nil {
			t.Fatal(err)
		}
	})
}

func TestCleanupStale(t *testing.T) {
	Require(t)
	const prefix = "ebp-tbstale"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := Start(ctx, Options{Hosts: 1, Prefix: prefix, NoAvahi: true, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	holder := b.Host(1).holder.pid()

	// A bed whose owner is alive is left alone.
	if err := CleanupStale(ctx, prefix, t.Logf); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(netnsDir, b.Host(1).Netns)); err != nil {
		t.Fatalf("live bed removed: %v", err)
	}

	// Pretend the owner crashed: record a process that has exited.
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(b.Dir, ownerFile), []byte(strings.Repeat("1", 1)+"0 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := CleanupStale(ctx, prefix, t.Logf); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{b.LAN, b.Host(1).Netns} {
		if _, err := os.Stat(filepath.Join(netnsDir, ns)); err == nil {
			t.Errorf("stale namespace %s survived", ns)
		}
	}
	if _, err := os.Stat(b.Dir); err == nil {
		t.Errorf("stale directory %s survived", b.Dir)
	}
	// The holder was killed; reap it so it does not linger as a zombie.
	<-b.Host(1).holder.done
	if _, err := procStartTime(holder); err == nil {
		t.Errorf("holder pid %d still exists", holder)
	}
}

func TestBedID(t *testing.T) {
	tests := []struct {
		name, want string
		ok         bool
	}{
		{"ebp-tb-a1b2c3-lan", "ebp-tb-a1b2c3", true},
		{"ebp-tb-a1b2c3-2", "ebp-tb-a1b2c3", true},
		{"ebp-tb-a1b2c3", "ebp-tb-a1b2c3", true},
		{"ebp-tbstale-a1b2c3-1", "", false},
		{"ebp-tb-", "", false},
		{"ebp-tb-run.log", "", false},
		{"ebp-tb-zzzzzz-1", "", false},
		{"other-a1b2c3", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := bedID("ebp-tb", tt.name)
			if ok != tt.ok || got != tt.want {
				t.Errorf("bedID(%q) = %q, %v; want %q, %v", tt.name, got, ok, tt.want, tt.ok)
			}
		})
	}
}

// Two subnets joined by a router: unicast crosses (ping, TCP), mDNS does
// not (a service published on one subnet is not seen on the other, and
// is on its own).
func TestRoutedSubnets(t *testing.T) {
	Require(t, "avahi-publish", "avahi-browse", "bash", "timeout")
	b := NewWithOptions(t, Options{Hosts: 3, Subnets: 2})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h1, h2, h3 := b.Host(1), b.Host(2), b.Host(3)
	if h1.Subnet != 1 || h2.Subnet != 2 || h3.Subnet != 1 || h1.Prefix.Masked() == h2.Prefix.Masked() {
		t.Fatalf("subnets: %s %d, %s %d, %s %d", h1.Prefix, h1.Subnet, h2.Prefix, h2.Subnet, h3.Prefix, h3.Subnet)
	}
	// A TCP connect to a closed port of host2: refused (host2 answered
	// through the router), not unreachable or timed out.
	out, _ := h1.Exec(ctx, "timeout", "5", "bash", "-c", "exec 3<>/dev/tcp/"+h2.IP.String()+"/9")
	if !strings.Contains(string(out), "refused") {
		t.Fatalf("host1 does not reach host2 through the router: %s", out)
	}
	pub := h1.Command(ctx, "avahi-publish", "-s", "tb-routed", "_ebp-tbprobe._tcp", "4242")
	if err := pub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pub.Process.Kill(); _ = pub.Wait() }()
	start := time.Now()
	for {
		out, _ := h3.Exec(ctx, "avahi-browse", "-rtp", "_ebp-tbprobe._tcp")
		if strings.Contains(string(out), h1.IP.String()) {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("host3 (same subnet) did not see host1's service:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Seen on the same subnet; after as long again, still not across.
	time.Sleep(time.Since(start) + time.Second)
	if out, _ := h2.Exec(ctx, "avahi-browse", "-rtp", "_ebp-tbprobe._tcp"); strings.Contains(string(out), "tb-routed") {
		t.Fatalf("host2 (the other subnet) saw host1's mDNS service:\n%s", out)
	}
}

// An IPv6-only bed: no IPv4 address, and mDNS between the hosts over
// link-local IPv6.
func TestIPv6OnlyBed(t *testing.T) {
	Require(t, "avahi-publish", "avahi-browse")
	b := NewWithOptions(t, Options{Hosts: 2, IPv6: true, IPv6Only: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h1, h2 := b.Host(1), b.Host(2)
	if !h1.IP.Is6() || !h1.IP.IsLinkLocalUnicast() || h1.IP == h2.IP {
		t.Fatalf("addresses %s %s", h1.IP, h2.IP)
	}
	if out, err := h1.Exec(ctx, "ip", "-4", "-o", "addr", "show", "dev", Iface); err != nil || strings.TrimSpace(string(out)) != "" {
		t.Fatalf("host1 has IPv4: %q %v", out, err)
	}
	pub := h1.Command(ctx, "avahi-publish", "-s", "tb-v6", "_ebp-tbprobe._tcp", "4242")
	if err := pub.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = pub.Process.Kill(); _ = pub.Wait() }()
	start := time.Now()
	for {
		out, _ := h2.Exec(ctx, "avahi-browse", "-rtp", "_ebp-tbprobe._tcp")
		if strings.Contains(string(out), "tb-v6") && strings.Contains(string(out), "fe80::") {
			t.Logf("host2 resolved host1's service over IPv6 in %v", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("host2 did not see host1's service over IPv6:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// A unicast DNS server on the bed: a service's PTR, SRV, TXT and address
// records there are found by a host's avahi browsing that domain, also
// across the router.
func TestWideAreaDNS(t *testing.T) {
	Require(t, "avahi-browse", "dnsmasq")
	b := NewWithOptions(t, Options{Hosts: 2, Subnets: 2, DNS: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	h1, h2 := b.Host(1), b.Host(2)
	err := b.DNS.SetRecords(ctx, "ebp.test", []string{
		"ptr-record=_ebp-tbprobe._tcp.ebp.test,probe._ebp-tbprobe._tcp.ebp.test",
		"srv-host=probe._ebp-tbprobe._tcp.ebp.test,host1.ebp.test,4242",
		`txt-record=probe._ebp-tbprobe._tcp.ebp.test,"k=v"`,
		"host-record=host1.ebp.test," + h1.IP.String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		out, _ := h2.Exec(ctx, "avahi-browse", "-rtp", "-d", "ebp.test", "_ebp-tbprobe._tcp")
		if strings.Contains(string(out), h1.IP.String()) && strings.Contains(string(out), "4242") {
			t.Logf("host2 (other subnet) resolved the service in ebp.test in %v", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("host2 did not find the service in ebp.test:\n%s\nDNS log:\n%s\navahi log:\n%s", out, b.DNS.Log(), h2.AvahiLog())
		}
		time.Sleep(300 * time.Millisecond)
	}
}
