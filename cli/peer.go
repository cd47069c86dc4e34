package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/godbus/dbus/v5"
	"golang.org/x/sys/unix"

	"github.com/ebrainpool/ebrainpool/app/config"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/discovery"
	"github.com/ebrainpool/ebrainpool/app/identity"
)

// peerCommands add and remove peers by address, for peers discovery does
// not reach (another subnet, a VPN).
func peerCommands() []*Command {
	return []*Command{peerAddCommand(), peerRemoveCommand(), peerIntroducerCommand()}
}

func peerAddCommand() *Command {
	var yes, asJSON bool
	var key string
	return &Command{
		Name: "peer add", Usage: "[--yes] [--fingerprint FP] [--json] HOST[:PORT]",
		Summary: "Add a peer by its address (for peers on another network): shows its name and short fingerprint and adds it once you confirm.",
		Details: fmt.Sprintf(`HOST is a host name, an IPv4 address or an IPv6 address (in brackets when a port follows; a link-local one with its interface, `+"`[fe80::1%%eth0]:%d`"+`). Without a port the default control port, %d, is tried.

The peer's name and the short fingerprint of its key are shown: compare them with what the colleague's own `+"`ebrainpool id`"+` (or Settings) shows before confirming. On a terminal you are asked; otherwise give --yes (after comparing) or --fingerprint with the fingerprint or short form the colleague told you, which the peer's key must match. The peer is then pinned, kept across restarts, listed by `+"`ebrainpool peers`"+` with whether it answers and when it last did, and connected to again with backoff while it does not. If another key answers at that address later, it is refused as "key changed".`, config.DefaultControlPort, config.DefaultControlPort),
		Flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&yes, "yes", false, "add the peer without asking (for scripts; compare its fingerprint first)")
			fs.StringVar(&key, "fingerprint", "", "the peer's fingerprint or short form as it told you: added only if its key matches, without asking")
			fs.BoolVar(&asJSON, "json", false, "print the added peer as JSON")
		},
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			if fs.NArg() != 1 {
				return usageError("peer add takes one HOST[:PORT]")
			}
			addr, err := config.NormalizePeerAddress(fs.Arg(0))
			if err != nil {
				return usageError("%v", err)
			}
			var ref identity.KeyRef
			if key != "" {
				if ref, err = identity.ParseKeyRef(key); err != nil {
					return usageError("--fingerprint: %v", err)
				}
			}
			interactive := !yes && ref.IsZero()
			if interactive && !isTerminal(env.Stdin) {
				return usageError("not asking without a terminal: give --yes (after comparing the peer's fingerprint) or --fingerprint FP")
			}
			return withClient(ctx, func(c *dbusapi.Client) error {
				p, err := c.ProbePeer(ctx, addr)
				if err != nil {
					return err
				}
				if !asJSON || interactive {
					out := env.Stdout
					if asJSON {
						out = env.Stderr
					}
					describeProbed(out, p)
				}
				confirmed := p.Fingerprint
				switch {
				case !ref.IsZero():
					if !ref.Matches(identity.Fingerprint(p.Fingerprint)) {
						return fmt.Errorf("the peer at %s shows the key %s, not the %s given: not added (someone else may answer at that address)", p.Address, p.Short, ref)
					}
				case interactive:
					out := env.Stdout
					if asJSON {
						out = env.Stderr // stdout is for the JSON
					}
					ok, err := confirm(out, env.Stdin, fmt.Sprintf("Add %q with the key %s? [y/N] ", p.Name, p.Short))
					if err != nil {
						return err
					}
					if !ok {
						return errors.New("not added")
					}
				}
				added, err := c.AddPeer(ctx, p.Address, confirmed)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(env.Stdout, addedView(added))
				}
				fmt.Fprintf(env.Stdout, "added %q at %s (%s)\n", added.Name, added.Address, added.Short)
				return nil
			})
		},
	}
}

// describeProbed tells who answered at an address.
func describeProbed(w io.Writer, p dbusapi.Probed) {
	fmt.Fprintf(w, "%s answers as %q\n", p.Address, p.Name)
	fmt.Fprintf(w, "  key: %s\n", p.Short)
	fmt.Fprintf(w, "       %s\n", p.Fingerprint)
	if p.Known {
		fmt.Fprintln(w, "  you have met this key before")
	}
	fmt.Fprintf(w, "  shares %d apps\n", p.Apps)
	fmt.Fprintln(w, "Compare the key with what the colleague's `ebrainpool id` (or Settings) shows.")
}

// confirm asks a yes/no question on the terminal; only y or yes is yes.
func confirm(w io.Writer, r io.Reader, question string) (bool, error) {
	fmt.Fprint(w, question)
	line, err := bufio.NewReader(io.LimitReader(r, 256)).ReadString('\n')
	if err != nil && line == "" {
		return false, fmt.Errorf("reading the answer: %w", err)
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}

// isTerminal reports whether r is a terminal (not just a character
// device: /dev/null is one).
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

func peerRemoveCommand() *Command {
	return &Command{
		Name: "peer remove", Usage: "ADDRESS|PEER",
		Summary: "Forget a peer added by address (by the address it was added with, its name or fingerprint).",
		Args:    []string{"peer"},
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			if fs.NArg() != 1 {
				return usageError("peer remove takes one ADDRESS or PEER")
			}
			return withClient(ctx, func(c *dbusapi.Client) error {
				if err := c.RemovePeer(ctx, fs.Arg(0)); err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "removed %s\n", fs.Arg(0))
				return nil
			})
		},
	}
}

// addedJSON is a peer added by address in --json output.
type addedJSON struct {
	Address          string   `json:"address"`
	Fingerprint      string   `json:"fingerprint"`
	ShortFingerprint string   `json:"short_fingerprint"`
	Name             string   `json:"name"`
	Reach            string   `json:"reach"` // unknown, reachable, unreachable or key-changed
	LastSeen         *rfc3339 `json:"last_seen"`
	Error            string   `json:"error"`
}

func addedView(p dbusapi.AddedPeer) addedJSON {
	v := addedJSON{Address: p.Address, Fingerprint: p.Fingerprint, ShortFingerprint: p.Short, Name: p.Name, Reach: string(p.Reach), Error: p.Error}
	if p.LastSeen != 0 {
		t := unixTime(p.LastSeen)
		v.LastSeen = &t
	}
	return v
}

// reachWords says how an added peer answers, for the peers table.
func reachWords(p dbusapi.AddedPeer) string {
	seen := "never seen"
	if p.LastSeen != 0 {
		seen = "seen " + time.Unix(p.LastSeen, 0).Format(time.DateTime)
	}
	switch p.Reach {
	case dbusapi.ReachReachable:
		return "reachable, " + seen
	case dbusapi.ReachUnreachable:
		return "unreachable, last " + seen
	case dbusapi.ReachKeyChanged:
		return "KEY CHANGED at this address - refused"
	}
	return "not tried yet, " + seen
}

// peerArg is one --peer KEY@HOST[:PORT][=NAME]: KEY a fingerprint or its
// short form, HOST a host name or IP address.
type peerArg struct {
	ref  identity.KeyRef
	addr string // normalized HOST:PORT
	name string
}

// peerFlag is the repeatable --peer.
type peerFlag []peerArg

func (p *peerFlag) String() string { return fmt.Sprint(len(*p)) }
func (p *peerFlag) Set(v string) error {
	key, addr, ok := strings.Cut(v, "@")
	if !ok {
		return fmt.Errorf("want FINGERPRINT@HOST[:PORT][=NAME]")
	}
	name := ""
	if a, n, ok := strings.Cut(addr, "="); ok {
		addr, name = a, n
	}
	ref, err := identity.ParseKeyRef(key)
	if err != nil {
		return err
	}
	norm, err := config.NormalizePeerAddress(addr)
	if err != nil {
		return err
	}
	*p = append(*p, peerArg{ref: ref, addr: norm, name: name})
	return nil
}

// addTo gives the daemon the peers: each is added by address (kept
// across restarts; one given by its short form is pinned once the peer
// with a matching key answers), and one with a full fingerprint at an IP
// address is also listed at once under the name given.
func (p peerFlag) addTo(d interface {
	AddAddress(identity.KeyRef, string, string) error
	AddPeer(discovery.Peer)
}) error {
	for _, a := range p {
		if err := d.AddAddress(a.ref, a.addr, a.name); err != nil {
			return fmt.Errorf("--peer %s@%s: %w", a.ref, a.addr, err)
		}
		host, port, _ := config.SplitPeerAddress(a.addr)
		ip, err := netip.ParseAddr(host)
		if a.ref.Full() == "" || err != nil {
			continue
		}
		name := a.name
		if name == "" {
			name = ip.String()
		}
		d.AddPeer(discovery.Peer{Fingerprint: a.ref.Full(), Name: name, Host: ip.String(), Addresses: []netip.Addr{ip}, Port: uint16(port)})
	}
	return nil
}

// handToRunning is a second start's flags given to the eBrainPool that
// already runs for this user (running: it does): its --peer peers are
// added through its API (each must answer now, with the key given);
// --listen and --no-discovery cannot change a running instance and are
// refused, as is anything not handed over.
func (f *daemonFlags) handToRunning(ctx context.Context, env *Env, conn *dbus.Conn) (running bool, err error) {
	var owned bool
	if err := conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.NameHasOwner", 0, dbusapi.BusName).Store(&owned); err != nil {
		return false, fmt.Errorf("asking the session bus whether eBrainPool runs: %w", err)
	}
	if !owned {
		return false, nil
	}
	switch {
	case f.listen != "":
		return true, errors.New("eBrainPool already runs for this user: --listen cannot change it while it runs (change the control port in Settings, or quit it and start it again)")
	case len(f.domains) > 0:
		return true, errors.New("eBrainPool already runs for this user: --browse-domain cannot change it while it runs (add the domain in Settings, or quit it and start it again)")
	case f.noDiscovery:
		return true, errors.New("eBrainPool already runs for this user: --no-discovery cannot change it while it runs (quit it and start it again)")
	}
	c := dbusapi.NewClient(conn)
	var failed []string
	for _, a := range f.peers {
		ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		p, err := c.AddPeer(ctx, a.addr, a.ref.String())
		cancel()
		if err != nil {
			failed = append(failed, fmt.Sprintf("--peer %s@%s: %v", a.ref, a.addr, err))
			continue
		}
		fmt.Fprintf(env.Stdout, "the running eBrainPool added %q at %s (%s)\n", p.Name, p.Address, p.Short)
	}
	if len(failed) > 0 {
		return true, fmt.Errorf("eBrainPool already runs for this user and could not add every peer given: %s", strings.Join(failed, "; "))
	}
	return true, nil
}

func peersCommand() *Command {
	var asJSON bool
	return &Command{
		Name: "peers", Usage: "[--json]", Summary: "List the peers found on the network and those added by address.",
		Flags: func(fs *flag.FlagSet) { fs.BoolVar(&asJSON, "json", false, "print JSON") },
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			if fs.NArg() != 0 {
				return usageError("peers takes no arguments")
			}
			return withClient(ctx, func(c *dbusapi.Client) error {
				peers, err := c.Peers(ctx)
				if err != nil {
					return err
				}
				added, err := c.AddedPeers(ctx)
				if err != nil {
					added = nil // an older daemon: no peers added by address
				}
				byFP := map[string]dbusapi.AddedPeer{}
				for _, a := range added {
					if a.Fingerprint != "" {
						byFP[a.Fingerprint] = a
					}
				}
				if asJSON {
					out := make([]peerJSON, 0, len(peers))
					for _, p := range peers {
						v := peerView(p)
						if a, ok := byFP[p.Fingerprint]; ok {
							v = withAdded(v, a)
						}
						out = append(out, v)
					}
					return printJSON(env.Stdout, out)
				}
				// Why the network's peers are missing, if they are (stderr).
				discoveryNote(ctx, c, env.Stderr)
				tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tHOST\tADDRESS\tFINGERPRINT\tTRUST\tHOW")
				for _, p := range peers {
					trust := string(p.Trust)
					if p.Trust == dbusapi.TrustChanged {
						trust = "KEY CHANGED - refused"
					}
					how := "discovered"
					if a, ok := byFP[p.Fingerprint]; ok {
						how = a.Address + ": " + reachWords(a)
					} else if p.IntroducedBy != "" {
						how = "introduced by " + p.IntroducedBy
					}
					if p.Introducer {
						how += " (introducer)"
					}
					addr := "-"
					if p.Address != "" {
						addr = net.JoinHostPort(p.Address, strconv.Itoa(int(p.Port)))
					}
					fmt.Fprintln(tw, strings.Join([]string{p.Name, p.Host, addr, p.Short, trust, how}, "\t"))
				}
				// Added peers whose key is not known yet (a --peer given
				// by its short form that never answered).
				for _, a := range added {
					if a.Fingerprint == "" {
						fmt.Fprintln(tw, strings.Join([]string{a.Name, "-", "-", a.Short, "-", a.Address + ": " + reachWords(a)}, "\t"))
					}
				}
				return tw.Flush()
			})
		},
	}
}

// domainFlag is the repeatable --browse-domain.
type domainFlag []string

func (d *domainFlag) String() string { return strings.Join(*d, ",") }
func (d *domainFlag) Set(v string) error {
	next := append(append([]string{}, *d...), strings.TrimSpace(v))
	if err := config.ValidBrowseDomains(next); err != nil {
		return err
	}
	*d = next
	return nil
}

func peerIntroducerCommand() *Command {
	var off bool
	return &Command{
		Name: "peer introducer", Usage: "[--off] PEER",
		Summary: "Mark a peer as introducer (off by default): the peers it knows are listed here as introduced by it.",
		Details: "The introducer is asked every 30 seconds for the peers it knows itself (discovered or added by address there; never its consent rules), with their addresses and fingerprints. They are listed as \"introduced by NAME\" when known no other way, and pinned on the first successful connect to the key announced for them, as discovered peers are; a launch still needs their user's consent. --off stops it.",
		Args:    []string{"peer"},
		Flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&off, "off", false, "no longer an introducer: the peers it introduced are no longer listed")
		},
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			if fs.NArg() != 1 {
				return usageError("peer introducer takes one PEER")
			}
			return withClient(ctx, func(c *dbusapi.Client) error {
				if err := c.SetIntroducer(ctx, fs.Arg(0), !off); err != nil {
					return err
				}
				if off {
					fmt.Fprintf(env.Stdout, "%s is no longer an introducer\n", fs.Arg(0))
				} else {
					fmt.Fprintf(env.Stdout, "%s is an introducer: the peers it knows appear in `ebrainpool peers`\n", fs.Arg(0))
				}
				return nil
			})
		},
	}
}
