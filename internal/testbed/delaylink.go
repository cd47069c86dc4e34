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
	"runtime"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// A delay link's addresses: the requester's and the host's end, on a /24
// that exists only inside the link's two namespaces (no test bed uses
// 10.77).
var (
	linkRequesterIP = netip.MustParseAddr("10.77.0.1")
	linkHostIP      = netip.MustParseAddr("10.77.0.2")
)

const linkBits = 24

// Link is two network namespaces, the requester's and the host's, joined
// by a relay in the test process that holds every packet for half the
// round trip in each direction: a network with a real round trip between
// two programs on one machine (this kernel has no sch_netem).
//
// Each namespace has one TUN device (IFF_TUN|IFF_NO_PI), made in the test
// process and moved there; the relay reads a packet from one and writes
// it to the other once it is due, in order. Sockets enter a namespace
// through Link.InRequester and Link.InHost; programs through
// Link.RequesterCommand and Link.HostCommand. Its names follow the test
// bed's (ebp-tb-<id>-req, ebp-tb-<id>-host, /tmp/ebp-tb-<id>), so a link
// left by a crashed run is removed by the next CleanupStale.
type Link struct {
	ID        string
	Dir       string
	Requester string // network namespace names
	Host      string
	// RequesterIP and HostIP are the two ends' addresses.
	RequesterIP, HostIP netip.Addr
	RTT                 time.Duration

	tuns      [2]*os.File
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// NewLink starts a delay link with round trip rtt, or skips t (fails it
// under CI=true) without root or iproute2. It is closed when t ends.
func NewLink(t testing.TB, rtt time.Duration) *Link {
	t.Helper()
	testenv.RequireRoot(t)
	testenv.RequireTools(t, "ip")
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		testenv.Skip(t, "the delay link needs /dev/net/tun: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	l, err := StartLink(ctx, rtt)
	if err != nil {
		t.Fatalf("starting the delay link: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("closing the delay link: %v", err)
		}
	})
	return l
}

// StartLink makes the namespaces and the TUN devices and starts the
// relay. On error everything made so far is removed again.
func StartLink(ctx context.Context, rtt time.Duration) (l *Link, err error) {
	if rtt < 0 {
		return nil, fmt.Errorf("delay link: negative round trip %v", rtt)
	}
	if err := CleanupStale(ctx, DefaultPrefix, nil); err != nil {
		return nil, fmt.Errorf("delay link: %w", err)
	}
	rnd := make([]byte, 3)
	if _, err := rand.Read(rnd); err != nil {
		return nil, fmt.Errorf("delay link id: %w", err)
	}
	id := hex.EncodeToString(rnd)
	name := DefaultPrefix + "-" + id
	l = &Link{ID: name, Dir: filepath.Join(os.TempDir(), name), Requester: name + "-req", Host: name + "-host",
		RequesterIP: linkRequesterIP, HostIP: linkHostIP, RTT: rtt}
	if err := os.Mkdir(l.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("delay link directory: %w", err)
	}
	if err := writeOwner(l.Dir); err != nil {
		os.RemoveAll(l.Dir)
		return nil, err
	}
	made := l
	defer func() {
		if err != nil {
			err = errors.Join(err, made.Close())
			l = nil
		}
	}()
	ends := []struct {
		ns  string
		dev string
		ip  netip.Addr
	}{
		{l.Requester, "ebp" + id + "r", l.RequesterIP},
		{l.Host, "ebp" + id + "h", l.HostIP},
	}
	for i, e := range ends {
		if err := run(ctx, "ip", "netns", "add", e.ns); err != nil {
			return nil, err
		}
		f, err := openTUN(e.dev)
		if err != nil {
			return nil, err
		}
		l.tuns[i] = f
		steps := [][]string{
			{"ip", "link", "set", e.dev, "netns", e.ns},
			{"ip", "-n", e.ns, "link", "set", "lo", "up"},
			{"ip", "-n", e.ns, "addr", "add", netip.PrefixFrom(e.ip, linkBits).String(), "dev", e.dev},
			{"ip", "-n", e.ns, "link", "set", e.dev, "up"},
		}
		for _, s := range steps {
			if err := run(ctx, s...); err != nil {
				return nil, fmt.Errorf("delay link: %w", err)
			}
		}
	}
	half := rtt / 2
	l.wg.Add(2)
	go l.relay(l.tuns[0], l.tuns[1], half)
	go l.relay(l.tuns[1], l.tuns[0], half)
	return l, nil
}

// openTUN makes a TUN device (no packet information header), nonblocking
// so that the relay's reads end when it is closed.
func openTUN(name string) (*os.File, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening /dev/net/tun: %w", err)
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("TUN device %s: %w", name, err)
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("creating TUN device %s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), "/dev/net/tun:"+name), nil
}

// packet is one IP packet in flight and when it is due at the other end.
type packet struct {
	due  time.Time
	data []byte
}

// linkQueue is how many packets one direction holds in flight (20 ms of
// 1500-byte packets at 600 MB/s); a full queue stalls the reader and the
// kernel drops at the device, as a full router queue does.
const linkQueue = 8192

// relay moves packets from one TUN to the other, each half later than it
// was read, in order, until from is closed.
func (l *Link) relay(from, to *os.File, half time.Duration) {
	defer l.wg.Done()
	q := make(chan packet, linkQueue)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := range q {
			// nanosleep, not time.Sleep: the runtime's timers wake
			// up to a millisecond late, which at a 1 ms round trip
			// would double it.
			if d := time.Until(p.due); d > 0 {
				ts := unix.NsecToTimespec(d.Nanoseconds())
				for unix.Nanosleep(&ts, &ts) == unix.EINTR {
				}
			}
			_, _ = to.Write(p.data) // a packet the device refuses is lost, as on a wire
		}
	}()
	buf := make([]byte, 1<<16)
	for {
		n, err := from.Read(buf)
		if err != nil {
			break
		}
		q <- packet{due: time.Now().Add(half), data: append([]byte(nil), buf[:n]...)}
	}
	close(q)
	<-done
}

// InRequester runs f on an OS thread in the requester's network namespace:
// sockets f makes (net.Listen, net.Dial) stay there. f must make them
// itself, not in goroutines it starts (those run on other threads).
// Programs f starts are in the namespace too.
func (l *Link) InRequester(f func() error) error { return inNetns(l.Requester, f) }

// InHost is InRequester for the host's namespace.
func (l *Link) InHost(f func() error) error { return inNetns(l.Host, f) }

// inNetns runs f on a locked thread switched into the named network
// namespace and switches it back. A thread that cannot be switched back is
// never unlocked: it ends with its goroutine.
func inNetns(name string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("the thread's network namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join(netnsDir, name))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("network namespace %s: %w", name, err)
			return
		}
		err = unix.Setns(int(target.Fd()), unix.CLONE_NEWNET)
		target.Close()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering network namespace %s: %w", name, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- errors.Join(ferr, fmt.Errorf("leaving network namespace %s: %w", name, err))
			return // still locked: the thread exits with this goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// RequesterCommand is argv run in the requester's namespace (ip netns
// exec); it sees the machine's filesystem, so X servers' unix sockets.
func (l *Link) RequesterCommand(ctx context.Context, argv ...string) *exec.Cmd {
	return netnsCommand(ctx, l.Requester, argv)
}

// HostCommand is argv run in the host's namespace.
func (l *Link) HostCommand(ctx context.Context, argv ...string) *exec.Cmd {
	return netnsCommand(ctx, l.Host, argv)
}

func netnsCommand(ctx context.Context, ns string, argv []string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns}, argv...)...)
}

// Close stops the relay, closes the TUN devices (which removes them),
// kills what still runs in the namespaces and deletes them. It is safe to
// call more than once.
func (l *Link) Close() error {
	l.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var errs []error
		for _, f := range l.tuns {
			if f != nil {
				errs = append(errs, f.Close())
			}
		}
		l.wg.Wait()
		errs = append(errs, removeNetns(ctx, l.Requester), removeNetns(ctx, l.Host))
		if err := os.RemoveAll(l.Dir); err != nil {
			errs = append(errs, fmt.Errorf("removing %s: %w", l.Dir, err))
		}
		l.closeErr = errors.Join(errs...)
	})
	return l.closeErr
}
