package cli

import (
	"context"
	"flag"
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/app/identity"
)

// The remembered decisions and the block list: listed (rules), revoked
// (revoke), a block lifted (unblock).

// decisionWords are how the CLI words a remembered decision.
var decisionWords = map[dbusapi.Decision]string{dbusapi.DecisionAllow: "always allow", dbusapi.DecisionDeny: "always deny"}

func rulesCommands() []*Command {
	return []*Command{rulesCommand(), revokeCommand(), unblockCommand(), displayCommand()}
}

// rulesJSON is `rules --json`: the remembered decisions and the blocked
// peers.
type rulesJSON struct {
	Rules   []ruleJSON    `json:"rules"`
	Blocked []blockedJSON `json:"blocked"`
}

type ruleJSON struct {
	PeerFingerprint string   `json:"peer_fingerprint"`
	PeerName        string   `json:"peer_name"`
	App             string   `json:"app"`
	AppName         string   `json:"app_name"`
	Decision        string   `json:"decision"` // allow or deny
	Since           *rfc3339 `json:"since"`    // null: made before this was recorded
}

type blockedJSON struct {
	PeerFingerprint string `json:"peer_fingerprint"`
	PeerName        string `json:"peer_name"`
}

func rulesView(rules []dbusapi.Rule, blocked []dbusapi.Blocked) rulesJSON {
	v := rulesJSON{Rules: []ruleJSON{}, Blocked: []blockedJSON{}}
	for _, r := range rules {
		j := ruleJSON{PeerFingerprint: r.Peer, PeerName: r.PeerName, App: r.App, AppName: r.AppName, Decision: string(r.Decision)}
		if r.Since > 0 {
			t := unixTime(r.Since)
			j.Since = &t
		}
		v.Rules = append(v.Rules, j)
	}
	for _, b := range blocked {
		v.Blocked = append(v.Blocked, blockedJSON{PeerFingerprint: b.Peer, PeerName: b.PeerName})
	}
	return v
}

func rulesCommand() *Command {
	var asJSON bool
	return &Command{
		Name: "rules", Usage: "[--json]",
		Summary: "List your remembered decisions (peer, app, allow or deny, since when) and the blocked peers; `revoke` and `unblock` undo them.",
		Flags:   func(fs *flag.FlagSet) { fs.BoolVar(&asJSON, "json", false, "print JSON") },
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			if fs.NArg() != 0 {
				return usageError("rules takes no arguments")
			}
			return withClient(ctx, func(c *dbusapi.Client) error {
				rules, err := c.Rules(ctx)
				if err != nil {
					return err
				}
				blocked, err := c.Blocked(ctx)
				if err != nil {
					return err
				}
				if asJSON {
					return printJSON(env.Stdout, rulesView(rules, blocked))
				}
				tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
				if len(rules) == 0 {
					fmt.Fprintln(tw, "No remembered decisions: every request asks you.")
				} else {
					fmt.Fprintln(tw, "PEER\tFINGERPRINT\tAPP\tDECISION\tSINCE")
					for _, r := range rules {
						since := "-"
						if r.Since > 0 {
							since = time.Unix(r.Since, 0).Format(time.DateTime)
						}
						fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.PeerName, identity.Fingerprint(r.Peer).Short(), r.AppName, decisionWords[r.Decision], since)
					}
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				fmt.Fprintln(env.Stdout)
				if len(blocked) == 0 {
					fmt.Fprintln(env.Stdout, "Nobody is blocked.")
					return nil
				}
				tw = tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "BLOCKED\tFINGERPRINT")
				for _, b := range blocked {
					fmt.Fprintf(tw, "%s\t%s\n", b.PeerName, identity.Fingerprint(b.Peer).Short())
				}
				return tw.Flush()
			})
		},
	}
}

func revokeCommand() *Command {
	return &Command{
		Name: "revoke", Usage: "PEER [APP]",
		Summary: "Revoke a remembered decision: PEER is asked again before running APP (without APP: before running any app). PEER and APP as `ebrainpool rules` lists them.",
		Args:    []string{"ruled-peer", "ruled-app"},
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			if fs.NArg() < 1 || fs.NArg() > 2 {
				return usageError("expected PEER and optionally APP")
			}
			peer, app := fs.Arg(0), fs.Arg(1)
			return withClient(ctx, func(c *dbusapi.Client) error {
				if err := c.ForgetRule(ctx, peer, app); err != nil {
					return err
				}
				if app == "" {
					fmt.Fprintf(env.Stdout, "%s will be asked again before running any app.\n", peer)
				} else {
					fmt.Fprintf(env.Stdout, "%s will be asked again before running %s.\n", peer, app)
				}
				return nil
			})
		},
	}
}

func unblockCommand() *Command {
	return &Command{
		Name: "unblock", Usage: "PEER", Summary: "Take a peer off the block list: its requests ask you again (PEER: the name it was blocked under, or a fingerprint or its prefix).",
		Args: []string{"blocked"},
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			peer, err := onePeer(fs)
			if err != nil {
				return err
			}
			return withClient(ctx, func(c *dbusapi.Client) error {
				if err := c.Unblock(ctx, peer); err != nil {
					return err
				}
				fmt.Fprintf(env.Stdout, "%s is no longer blocked.\n", peer)
				return nil
			})
		},
	}
}

// ruleCandidates completes the rules' kinds: blocked peers, the peers of
// remembered decisions, and (after such a peer) its apps.
func ruleCandidates(ctx context.Context, c *dbusapi.Client, kind, peer string, add func(value, desc string)) {
	switch kind {
	case "blocked":
		bs, err := c.Blocked(ctx)
		if err != nil {
			return
		}
		for _, b := range bs {
			add(b.PeerName, "blocked, "+identity.Fingerprint(b.Peer).Short())
		}
	case "ruled-peer", "ruled-app":
		rs, err := c.Rules(ctx)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for _, r := range rs {
			switch {
			case kind == "ruled-peer" && !seen[r.Peer]:
				seen[r.Peer] = true
				add(r.PeerName, identity.Fingerprint(r.Peer).Short())
			case kind == "ruled-app" && (r.PeerName == peer || r.Peer == peer) && r.App != "":
				add(r.App, fmt.Sprintf("%s: %s", r.AppName, decisionWords[r.Decision]))
			}
		}
	}
}
