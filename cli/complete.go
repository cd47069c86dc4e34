package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
	"github.com/ebrainpool/ebrainpool/sandbox"
)

// Shell completions: `ebrainpool completion bash|zsh|fish` prints a
// script made from the command table (commands, groups, flags and what
// each argument is); for peers, their apps, requests, sessions and
// sandboxes the script asks `ebrainpool __complete KIND [PEER]`, which
// prints "CANDIDATE<TAB>DESCRIPTION" lines from the running daemon
// quickly, and nothing when none runs.

// completeKinds are the argument kinds of Command.Args and FlagArgs
// (besides "a|b|c" word lists): asked of __complete, or completed by the
// shell itself (file, command, user).
var completeKinds = map[string]bool{
	"peer": true, "app": true, "request": true, "session": true, "peer-or-request": true,
	"local-app": true, "shared-app": true, "sandbox": true,
	"blocked": true, "ruled-peer": true, "ruled-app": true,
	"file": true, "command": true, "user": true,
}

// shellKinds are completed by the shell, not by __complete.
var shellKinds = map[string]bool{"file": true, "command": true, "user": true}

// completeTimeout bounds a daemon call made for a completion (a peer's
// catalog crosses the network).
const (
	completeTimeout        = 2 * time.Second
	completeCatalogTimeout = 3 * time.Second
)

func completeCommand() *Command {
	return &Command{
		Name: "__complete", Usage: "KIND [PEER]", Hidden: true,
		Summary: "Print completion candidates of a kind (peer, app PEER, request, session, ...) for the shell completions.",
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			if fs.NArg() < 1 || !completeKinds[fs.Arg(0)] || shellKinds[fs.Arg(0)] {
				return usageError("expected one of: %s", strings.Join(dynamicKinds(), ", "))
			}
			for _, c := range candidates(ctx, fs.Arg(0), fs.Arg(1)) {
				fmt.Fprintf(env.Stdout, "%s\t%s\n", c.value, c.desc)
			}
			return nil
		},
	}
}

func dynamicKinds() []string {
	var out []string
	for k := range completeKinds {
		if !shellKinds[k] {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

type candidate struct{ value, desc string }

// oneLine makes s fit a candidate line: no tabs or newlines.
func oneLine(s string) string {
	return strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == '\t' || r == '\n' || r == '\r' }), " ")
}

func hasSpace(s string) bool { return strings.IndexFunc(s, unicode.IsSpace) >= 0 }

// candidates of kind; errors (no daemon, no setup) give none.
func candidates(ctx context.Context, kind, peer string) []candidate {
	var out []candidate
	add := func(value, desc string) {
		if value != "" && !hasSpace(value) {
			out = append(out, candidate{value, oneLine(desc)})
		}
	}
	switch kind {
	case "local-app", "shared-app":
		_, apps, s, err := localApps()
		if err != nil {
			return nil
		}
		for _, a := range apps {
			if kind == "local-app" || s.Shared(a.ID) {
				add(a.ID, a.Name)
			}
		}
		return out
	case "sandbox":
		for _, p := range sandboxPeers() {
			add(p, "sandbox")
		}
		return out
	}
	c, err := connect()
	if err != nil {
		return nil
	}
	defer c.Close()
	timeout := completeTimeout
	if kind == "app" {
		timeout = completeCatalogTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if kind == "peer" || kind == "peer-or-request" {
		if ps, err := c.Peers(ctx); err == nil {
			for _, p := range peerHandles(ps) {
				add(p.value, p.desc)
			}
		}
	}
	switch kind {
	case "app":
		if peer == "" {
			return nil
		}
		apps, err := c.Apps(ctx, peer)
		if err != nil {
			return nil
		}
		for _, a := range apps {
			add(a.ID, a.Name)
		}
	case "request", "peer-or-request":
		if rs, err := c.Pending(ctx); err == nil {
			for _, r := range rs {
				add(r.ID, fmt.Sprintf("%s asks for %s", r.PeerName, r.App))
			}
		}
	case "blocked", "ruled-peer", "ruled-app":
		ruleCandidates(ctx, c, kind, peer, add)
	case "session":
		if ss, err := c.Sessions(ctx); err == nil {
			for _, s := range ss {
				add(s.ID, fmt.Sprintf("%s %s %s (%s)", s.Direction, s.PeerName, s.App, s.State))
			}
		}
	}
	return out
}

// peerHandles is, for each peer, a word the daemon resolves to it alone:
// its display name, else its host name (without .local), else its short
// fingerprint; with the name, host and trust as description.
func peerHandles(ps []dbusapi.Peer) []candidate {
	count := func(match func(dbusapi.Peer) bool) int {
		n := 0
		for _, p := range ps {
			if match(p) {
				n++
			}
		}
		return n
	}
	host := func(p dbusapi.Peer) string {
		return strings.TrimSuffix(strings.TrimSuffix(strings.ToLower(p.Host), "."), ".local")
	}
	var out []candidate
	for _, p := range ps {
		handle := p.Short
		switch {
		case p.Name != "" && !hasSpace(p.Name) && count(func(q dbusapi.Peer) bool { return strings.EqualFold(q.Name, p.Name) }) == 1:
			handle = p.Name
		case host(p) != "" && !hasSpace(host(p)) && count(func(q dbusapi.Peer) bool { return host(q) == host(p) }) == 1 &&
			count(func(q dbusapi.Peer) bool { return strings.EqualFold(q.Name, host(p)) }) == 0:
			handle = host(p)
		}
		out = append(out, candidate{handle, fmt.Sprintf("%s (%s, %s)", p.Name, p.Host, p.Trust)})
	}
	return out
}

// sandboxPeers are the peers of this user's sandboxes, read from their
// directories (without a sandbox manager, which would prepare cgroups).
func sandboxPeers() []string {
	u, err := user.Current()
	if err != nil {
		return nil
	}
	dirs, _ := filepath.Glob(filepath.Join(sandbox.DefaultLayout().LXCPath(u.Username), "ebp-*", "meta.json"))
	var out []string
	for _, f := range dirs {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var m struct {
			Peer string `json:"peer"`
		}
		if json.Unmarshal(b, &m) == nil && m.Peer != "" {
			out = append(out, m.Peer)
		}
	}
	sort.Strings(out)
	return out
}

func completionCommand() *Command {
	return &Command{
		Name: "completion", Usage: "bash|zsh|fish",
		Summary: "Print the shell completion script for bash, zsh or fish (commands, flags, peers and their apps).",
		Details: "The Debian package installs them. By hand: " +
			"`ebrainpool completion bash > ~/.local/share/bash-completion/completions/ebrainpool`; " +
			"`ebrainpool completion zsh > ~/.zfunc/_ebrainpool` (with ~/.zfunc in fpath before compinit); " +
			"`ebrainpool completion fish > ~/.config/fish/completions/ebrainpool.fish`. " +
			"Peers, apps, requests and sessions are completed from the running daemon.",
		Args: []string{"bash|zsh|fish"},
		Run: func(ctx context.Context, env *Env, fs *flag.FlagSet) error {
			if fs.NArg() != 1 {
				return usageError("expected bash, zsh or fish")
			}
			specs := completionSpecs()
			switch fs.Arg(0) {
			case "bash":
				return writeBash(env.Stdout, specs)
			case "zsh":
				return writeZsh(env.Stdout, specs)
			case "fish":
				return writeFish(env.Stdout, specs)
			}
			return usageError("no completion for %q: expected bash, zsh or fish", fs.Arg(0))
		},
	}
}

// compFlag is a flag of a command, for the completions.
type compFlag struct {
	Name, Usage string
	Value       bool   // takes a value
	Kind        string // what the value is (FlagArgs), "" for anything
}

// compSpec is what the completions know of one command.
type compSpec struct {
	Name, Summary string
	Words         []string // Name split: the group and the command, or the command
	Flags         []compFlag
	Args          []string
	Verbatim      int
}

// completionSpecs are the visible commands' specs, sorted by name.
func completionSpecs() []compSpec {
	var out []compSpec
	for _, c := range commands() {
		if c.Hidden {
			continue
		}
		s := compSpec{Name: c.Name, Summary: strings.ReplaceAll(c.Summary, "`", ""), Words: strings.Fields(c.Name), Args: c.Args, Verbatim: c.Verbatim}
		fs := newFlagSet(c)
		fs.VisitAll(func(f *flag.Flag) {
			_, usage := flag.UnquoteUsage(f)
			bf, isBool := f.Value.(interface{ IsBoolFlag() bool })
			s.Flags = append(s.Flags, compFlag{Name: f.Name, Usage: strings.ReplaceAll(usage, "`", ""), Value: !(isBool && bf.IsBoolFlag()), Kind: c.FlagArgs[f.Name]})
		})
		s.Flags = append(s.Flags, compFlag{Name: "help", Usage: "show the command's usage"})
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// topWords are the first words of the commands (a group once), sorted,
// with the summary of the command or "commands of the group".
func topWords(specs []compSpec) []candidate {
	seen := map[string]bool{}
	var out []candidate
	for _, s := range specs {
		if seen[s.Words[0]] {
			continue
		}
		seen[s.Words[0]] = true
		desc := s.Summary
		if len(s.Words) > 1 {
			desc = s.Words[0] + " commands"
		}
		out = append(out, candidate{s.Words[0], desc})
	}
	out = append(out, candidate{"help", "show the usage of a command"})
	sort.Slice(out, func(i, j int) bool { return out[i].value < out[j].value })
	return out
}

// groups maps a group's word to its commands' second words.
func groups(specs []compSpec) map[string][]compSpec {
	g := map[string][]compSpec{}
	for _, s := range specs {
		if len(s.Words) > 1 {
			g[s.Words[0]] = append(g[s.Words[0]], s)
		}
	}
	return g
}

func sortedKeys[V any](m map[string]V) []string {
	var k []string
	for x := range m {
		k = append(k, x)
	}
	sort.Strings(k)
	return k
}

// sq quotes s for a POSIX shell (and zsh) in single quotes.
func sq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// fq quotes s for fish in single quotes.
func fq(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, "'", `\'`).Replace(s) + "'"
}

func flagNames(s compSpec, value bool) []string {
	var out []string
	for _, f := range s.Flags {
		if f.Value == value {
			out = append(out, "--"+f.Name)
		}
	}
	return out
}

const completionHeader = "Generated by `ebrainpool completion %s` from the command table; do not edit."

func writeBash(w io.Writer, specs []compSpec) error {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p("# bash completion for ebrainpool                         -*- shell-script -*-")
	p("# "+completionHeader, "bash")
	p("")
	var top []string
	for _, c := range topWords(specs) {
		top = append(top, c.value)
	}
	p("_ebrainpool_top=%s", sq(strings.Join(top, " ")))
	p("")
	p("# _ebrainpool_group WORD: the commands of a group, or fails")
	p("_ebrainpool_group() {")
	p("    case $1 in")
	g := groups(specs)
	for _, word := range sortedKeys(g) {
		var subs []string
		for _, s := range g[word] {
			subs = append(subs, s.Words[1])
		}
		p("    %s) _ebp_sub=%s ;;", sq(word), sq(strings.Join(subs, " ")))
	}
	p("    *) return 1 ;;")
	p("    esac")
	p("}")
	p("")
	p("# _ebrainpool_spec COMMAND: its flags taking a value, its other flags,")
	p("# the kinds of its arguments, and after how many arguments the rest is")
	p("# a command line of its own")
	p("_ebrainpool_spec() {")
	p("    _ebp_vflags='' _ebp_bflags='--help' _ebp_args=() _ebp_verbatim=0")
	p("    case $1 in")
	for _, s := range specs {
		var args []string
		for _, a := range s.Args {
			args = append(args, sq(a))
		}
		p("    %s) _ebp_vflags=%s _ebp_bflags=%s _ebp_args=(%s) _ebp_verbatim=%d ;;", sq(s.Name),
			sq(strings.Join(flagNames(s, true), " ")), sq(strings.Join(flagNames(s, false), " ")), strings.Join(args, " "), s.Verbatim)
	}
	p("    esac")
	p("}")
	p("")
	p("# _ebrainpool_flagkind COMMAND FLAG: what the flag's value is")
	p("_ebrainpool_flagkind() {")
	p("    _ebp_kind=''")
	p("    case \"$1 $2\" in")
	for _, s := range specs {
		for _, f := range s.Flags {
			if f.Kind != "" {
				p("    %s) _ebp_kind=%s ;;", sq(s.Name+" --"+f.Name), sq(f.Kind))
			}
		}
	}
	p("    esac")
	p("}")
	p("")
	b.WriteString(bashBody)
	_, err := io.WriteString(w, b.String())
	return err
}

// bashBody walks the words before the cursor as the command line parses
// them (flags anywhere, "--", a command's verbatim tail) and completes the
// word at the cursor. It splits COMP_LINE itself, so that words bash
// breaks at ':' and '=' (fingerprints, --flag=value) stay whole, and
// strips from the candidates what bash will not replace.
const bashBody = `# _ebrainpool_kind KIND PEER CUR: candidates of an argument kind
_ebrainpool_kind() {
    local kind=$1 peer=$2 cur=$3 line IFS=$'\n'
    case $kind in
    '') ;;
    *'|'*) COMPREPLY+=($(compgen -W "${kind//|/$'\n'}" -- "$cur")) ;;
    file) compopt -o filenames 2>/dev/null; COMPREPLY+=($(compgen -f -- "$cur")) ;;
    user) COMPREPLY+=($(compgen -u -- "$cur")) ;;
    command) COMPREPLY+=($(compgen -c -- "$cur")) ;;
    *)
        for line in $("$_ebp_bin" __complete "$kind" "$peer" 2>/dev/null); do
            line=${line%%$'\t'*}
            [[ $line == "$cur"* ]] && COMPREPLY+=("$line")
        done
        ;;
    esac
}

_ebrainpool() {
    local _ebp_bin=$1 _ebp_vflags _ebp_bflags _ebp_args _ebp_verbatim _ebp_kind _ebp_sub
    local line=${COMP_LINE:0:COMP_POINT} cur='' cmd='' grp='' dashdash='' skip='' lastflag='' w f i kind
    local -a words args
    COMPREPLY=()
    read -r -a words <<<"$line"
    if [[ $line != *[[:space:]] && ${#words[@]} -gt 0 ]]; then
        cur=${words[${#words[@]}-1]}
        unset 'words[${#words[@]}-1]'
    fi
    for w in "${words[@]:1}"; do
        if [[ -n $skip ]]; then
            skip=''
            continue
        fi
        if [[ -z $dashdash && $w == -- ]]; then
            dashdash=1
            continue
        fi
        if [[ -z $dashdash && $w == -?* ]]; then
            f=${w#-}
            f=--${f#-}
            if [[ -n $cmd && $f != *=* && " $_ebp_vflags " == *" $f "* ]]; then
                skip=1 lastflag=$f
            fi
            continue
        fi
        if [[ -z $cmd ]]; then
            if [[ -n $grp ]]; then
                cmd="$grp $w"
                _ebrainpool_spec "$cmd"
            elif _ebrainpool_group "$w"; then
                grp=$w
            else
                cmd=$w
                _ebrainpool_spec "$cmd"
            fi
            continue
        fi
        args+=("$w")
        if ((_ebp_verbatim > 0 && ${#args[@]} >= _ebp_verbatim)); then
            dashdash=1
        fi
    done

    if [[ -n $skip ]]; then
        _ebrainpool_flagkind "$cmd" "$lastflag"
        _ebrainpool_kind "$_ebp_kind" '' "$cur"
    elif [[ -z $dashdash && $cur == -* ]]; then
        if [[ $cur == *=* ]]; then
            f=${cur%%=*}
            f=${f#-}
            f=--${f#-}
            _ebrainpool_flagkind "$cmd" "$f"
            _ebrainpool_kind "$_ebp_kind" '' "${cur#*=}"
            for i in "${!COMPREPLY[@]}"; do
                COMPREPLY[i]=${cur%%=*}=${COMPREPLY[i]}
            done
        elif [[ -n $cmd ]]; then
            COMPREPLY=($(compgen -W "$_ebp_vflags $_ebp_bflags" -- "$cur"))
        elif [[ -n $grp ]]; then
            COMPREPLY=($(compgen -W '--help' -- "$cur"))
        else
            COMPREPLY=($(compgen -W '--help --version' -- "$cur"))
        fi
    elif [[ -z $cmd && -n $grp ]]; then
        _ebrainpool_group "$grp"
        COMPREPLY=($(compgen -W "$_ebp_sub" -- "$cur"))
    elif [[ -z $cmd ]]; then
        COMPREPLY=($(compgen -W "$_ebrainpool_top" -- "$cur"))
    elif [[ $cmd == help ]]; then
        if ((${#args[@]} == 0)); then
            COMPREPLY=($(compgen -W "$_ebrainpool_top" -- "$cur"))
        elif _ebrainpool_group "${args[0]}" && ((${#args[@]} == 1)); then
            COMPREPLY=($(compgen -W "$_ebp_sub" -- "$cur"))
        fi
    else
        i=${#args[@]}
        kind=''
        if ((i < ${#_ebp_args[@]})); then
            kind=${_ebp_args[i]}
        elif ((${#_ebp_args[@]} > 0)) && [[ ${_ebp_args[${#_ebp_args[@]}-1]} == *... ]]; then
            kind=${_ebp_args[${#_ebp_args[@]}-1]}
        fi
        _ebrainpool_kind "${kind%...}" "${args[0]}" "$cur"
    fi

    # Bash replaces only what follows the last of its word breaks.
    local wb=${COMP_WORDBREAKS//[^:=]/}
    if [[ -n $wb && $cur == *["$wb"]* ]]; then
        local keep=${cur%"${cur##*["$wb"]}"}
        for i in "${!COMPREPLY[@]}"; do
            COMPREPLY[i]=${COMPREPLY[i]#"$keep"}
        done
    fi
    return 0
}

complete -F _ebrainpool ebrainpool
`

func writeZsh(w io.Writer, specs []compSpec) error {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p("#compdef ebrainpool")
	p("# zsh completion for ebrainpool. "+completionHeader, "zsh")
	p("")
	p("_ebrainpool_top() {")
	p("    local -a cmds")
	p("    cmds=(")
	for _, c := range topWords(specs) {
		p("        %s", sq(strings.ReplaceAll(c.value, ":", `\:`)+":"+c.desc))
	}
	p("    )")
	p("    _describe -t commands 'ebrainpool command' cmds")
	p("}")
	p("")
	p("# _ebrainpool_group WORD [describe]: whether WORD is a group (and its commands)")
	p("_ebrainpool_group() {")
	p("    local -a subs")
	p("    case $1 in")
	g := groups(specs)
	for _, word := range sortedKeys(g) {
		var subs []string
		for _, s := range g[word] {
			subs = append(subs, sq(s.Words[1]+":"+s.Summary))
		}
		p("    (%s) subs=(%s) ;;", sq(word), strings.Join(subs, " "))
	}
	p("    (*) return 1 ;;")
	p("    esac")
	p("    [[ -n $2 ]] && _describe -t commands \"ebrainpool $1 command\" subs")
	p("    return 0")
	p("}")
	p("")
	p("_ebrainpool_spec() {")
	p("    vflags=() flags=('--help:show the command'\\''s usage') argkinds=() verbatim=0")
	p("    case $1 in")
	for _, s := range specs {
		var vf, all, args []string
		for _, f := range s.Flags {
			if f.Value {
				vf = append(vf, sq("--"+f.Name))
			}
			all = append(all, sq("--"+f.Name+":"+f.Usage))
		}
		for _, a := range s.Args {
			args = append(args, sq(a))
		}
		p("    (%s) vflags=(%s) flags=(%s) argkinds=(%s) verbatim=%d ;;", sq(s.Name), strings.Join(vf, " "), strings.Join(all, " "), strings.Join(args, " "), s.Verbatim)
	}
	p("    esac")
	p("}")
	p("")
	p("_ebrainpool_flagkind() {")
	p("    kind=''")
	p("    case \"$1 $2\" in")
	for _, s := range specs {
		for _, f := range s.Flags {
			if f.Kind != "" {
				p("    (%s) kind=%s ;;", sq(s.Name+" --"+f.Name), sq(f.Kind))
			}
		}
	}
	p("    esac")
	p("}")
	p("")
	b.WriteString(zshBody)
	_, err := io.WriteString(w, b.String())
	return err
}

// zshBody is bashBody's walk in zsh, with descriptions.
const zshBody = `_ebrainpool_kind() {
    local kind=$1 peer=$2 line
    local -a cands
    case $kind in
    ('') return 1 ;;
    (*'|'*) compadd -- ${(s:|:)kind} ;;
    (file) _files ;;
    (user) _users ;;
    (command) _command_names -e ;;
    (*)
        for line in ${(f)"$(${words[1]} __complete $kind $peer 2>/dev/null)"}; do
            cands+=("${${line%%$'\t'*}//:/\\:}:${line#*$'\t'}")
        done
        _describe -t $kind $kind cands
        ;;
    esac
}

_ebrainpool() {
    local -a vflags flags argkinds args
    local verbatim=0 cmd='' grp='' dashdash='' skip='' lastflag='' kind='' cur=${words[CURRENT]} w f i
    for ((i = 2; i < CURRENT; i++)); do
        w=${words[i]}
        if [[ -n $skip ]]; then
            skip=''
            continue
        fi
        if [[ -z $dashdash && $w == -- ]]; then
            dashdash=1
            continue
        fi
        if [[ -z $dashdash && $w == -?* ]]; then
            f=${w#-}
            f=--${f#-}
            if [[ -n $cmd && $f != *=* && ${vflags[(Ie)$f]} -gt 0 ]]; then
                skip=1 lastflag=$f
            fi
            continue
        fi
        if [[ -z $cmd ]]; then
            if [[ -n $grp ]]; then
                cmd="$grp $w"
                _ebrainpool_spec $cmd
            elif _ebrainpool_group $w; then
                grp=$w
            else
                cmd=$w
                _ebrainpool_spec $cmd
            fi
            continue
        fi
        args+=("$w")
        if (( verbatim > 0 && ${#args} >= verbatim )); then
            dashdash=1
        fi
    done

    if [[ -n $skip ]]; then
        _ebrainpool_flagkind $cmd $lastflag
        _ebrainpool_kind $kind ''
    elif [[ -z $dashdash && $cur == -* ]]; then
        if [[ $cur == *=* ]]; then
            f=${cur%%=*}
            f=${f#-}
            f=--${f#-}
            _ebrainpool_flagkind $cmd $f
            compset -P '*='
            _ebrainpool_kind $kind ''
        elif [[ -n $cmd ]]; then
            _describe -t flags 'flag' flags
        elif [[ -n $grp ]]; then
            compadd -- --help
        else
            compadd -- --help --version
        fi
    elif [[ -z $cmd && -n $grp ]]; then
        _ebrainpool_group $grp describe
    elif [[ -z $cmd ]]; then
        _ebrainpool_top
    elif [[ $cmd == help ]]; then
        if (( ${#args} == 0 )); then
            _ebrainpool_top
        elif (( ${#args} == 1 )); then
            _ebrainpool_group ${args[1]} describe
        fi
    else
        i=$(( ${#args} + 1 ))
        kind=''
        if (( i <= ${#argkinds} )); then
            kind=${argkinds[i]}
        elif (( ${#argkinds} > 0 )) && [[ ${argkinds[-1]} == *... ]]; then
            kind=${argkinds[-1]}
        fi
        _ebrainpool_kind ${kind%...} "${args[1]}"
    fi
}

_ebrainpool "$@"
`

func writeFish(w io.Writer, specs []compSpec) error {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format+"\n", a...) }
	p("# fish completion for ebrainpool. "+completionHeader, "fish")
	p("")
	g := groups(specs)
	p("function __ebrainpool_groups")
	p("    printf '%%s\\n' %s", strings.Join(sortedKeys(g), " "))
	p("end")
	p("")
	p("function __ebrainpool_vflags --argument-names cmd")
	p("    switch $cmd")
	for _, s := range specs {
		if vf := flagNames(s, true); len(vf) > 0 {
			p("        case %s", fq(s.Name))
			p("            printf '%%s\\n' %s", strings.Join(vf, " "))
		}
	}
	p("    end")
	p("end")
	p("")
	p("function __ebrainpool_argkinds --argument-names cmd")
	p("    switch $cmd")
	for _, s := range specs {
		if len(s.Args) > 0 {
			var q []string
			for _, a := range s.Args {
				q = append(q, fq(a))
			}
			p("        case %s", fq(s.Name))
			p("            printf '%%s\\n' %s", strings.Join(q, " "))
		}
	}
	p("    end")
	p("end")
	p("")
	p("function __ebrainpool_verbatim --argument-names cmd")
	p("    switch $cmd")
	for _, s := range specs {
		if s.Verbatim > 0 {
			p("        case %s", fq(s.Name))
			p("            echo %d", s.Verbatim)
			p("            return")
		}
	}
	p("    end")
	p("    echo 0")
	p("end")
	p("")
	b.WriteString(fishBody)
	p("")
	p("# Commands and groups")
	for _, c := range topWords(specs) {
		p("complete -c ebrainpool -n '__ebrainpool_state top' -a %s -d %s", fq(c.value), fq(c.desc))
	}
	for _, c := range topWords(specs) {
		p("complete -c ebrainpool -n '__ebrainpool_state help' -a %s -d %s", fq(c.value), fq(c.desc))
	}
	for _, word := range sortedKeys(g) {
		for _, s := range g[word] {
			p("complete -c ebrainpool -n %s -a %s -d %s", fq("__ebrainpool_state group "+word), fq(s.Words[1]), fq(s.Summary))
			p("complete -c ebrainpool -n %s -a %s -d %s", fq("__ebrainpool_state helpgroup "+word), fq(s.Words[1]), fq(s.Summary))
		}
	}
	p("complete -c ebrainpool -n '__ebrainpool_state top' -l version -d 'print the version'")
	p("complete -c ebrainpool -n '__ebrainpool_state top' -l help -d 'show the commands'")
	p("")
	p("# Flags")
	for _, s := range specs {
		for _, f := range s.Flags {
			line := fmt.Sprintf("complete -c ebrainpool -n %s -l %s -d %s", fq("__ebrainpool_state cmd "+s.Name), f.Name, fq(f.Usage))
			switch {
			case !f.Value:
			case strings.Contains(f.Kind, "|"):
				line += " -x -a " + fq(strings.ReplaceAll(f.Kind, "|", " "))
			case f.Kind == "file" || f.Kind == "":
				line += " -r"
			case f.Kind == "user":
				line += " -x -a '(__fish_complete_users)'"
			default:
				line += " -x -a " + fq("(__ebrainpool_dynamic "+f.Kind+")")
			}
			p("%s", line)
		}
	}
	p("")
	p("# Arguments")
	kinds := map[string]bool{}
	for _, s := range specs {
		for _, a := range s.Args {
			kinds[strings.TrimSuffix(a, "...")] = true
		}
	}
	for _, k := range sortedKeys(kinds) {
		cond := fq("__ebrainpool_state arg " + fq(k))
		switch {
		case strings.Contains(k, "|"):
			p("complete -c ebrainpool -n %s -a %s", cond, fq(strings.ReplaceAll(k, "|", " ")))
		case k == "file":
			p("complete -c ebrainpool -n %s -F", cond)
		case k == "command":
			p("complete -c ebrainpool -n %s -a '(__fish_complete_command)'", cond)
		case k == "user":
			p("complete -c ebrainpool -n %s -a '(__fish_complete_users)'", cond)
		default:
			p("complete -c ebrainpool -n %s -a %s", cond, fq("(__ebrainpool_dynamic "+k+")"))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fishBody: __ebrainpool_state walks the command line as bashBody does
// and answers one question: top (no command yet), group G (a group's
// command is next), cmd C (the command is C), arg KIND (the next
// argument is of KIND).
const fishBody = `function __ebrainpool_parse
    set -l toks (commandline -opc)
    set -e toks[1]
    set -g __ebp_cmd ''
    set -g __ebp_grp ''
    set -g __ebp_args
    set -g __ebp_dashdash 0
    set -l skip 0
    set -l verbatim 0
    for w in $toks
        if test $skip = 1
            set skip 0
            continue
        end
        if test $__ebp_dashdash = 0; and test "$w" = --
            set __ebp_dashdash 1
            continue
        end
        if test $__ebp_dashdash = 0; and string match -qr -- '^-.' $w
            if test -n "$__ebp_cmd"; and not string match -q -- '*=*' $w
                set -l f -- --(string replace -r -- '^--?' '' $w)
                if contains -- $f (__ebrainpool_vflags $__ebp_cmd)
                    set skip 1
                end
            end
            continue
        end
        if test -z "$__ebp_cmd"
            if test -n "$__ebp_grp"
                set __ebp_cmd "$__ebp_grp $w"
                set verbatim (__ebrainpool_verbatim $__ebp_cmd)
            else if contains -- $w (__ebrainpool_groups)
                set __ebp_grp $w
            else
                set __ebp_cmd $w
                set verbatim (__ebrainpool_verbatim $__ebp_cmd)
            end
            continue
        end
        set -a __ebp_args $w
        if test $verbatim -gt 0; and test (count $__ebp_args) -ge $verbatim
            set __ebp_dashdash 1
        end
    end
end

function __ebrainpool_state --argument-names what value
    __ebrainpool_parse
    switch $what
        case top
            test -z "$__ebp_cmd"; and test -z "$__ebp_grp"
        case group
            test -z "$__ebp_cmd"; and test "$__ebp_grp" = "$value"
        case cmd
            test "$__ebp_cmd" = "$argv[2..-1]"; and test $__ebp_dashdash = 0
        case help
            test "$__ebp_cmd" = help; and test (count $__ebp_args) = 0
        case helpgroup
            test "$__ebp_cmd" = help; and test (count $__ebp_args) = 1; and test "$__ebp_args[1]" = "$value"
        case arg
            test -n "$__ebp_cmd"; or return 1
            if test "$__ebp_cmd" = help
                return 1
            end
            set -l kinds (__ebrainpool_argkinds $__ebp_cmd)
            set -l i (math (count $__ebp_args) + 1)
            set -l kind ''
            if test $i -le (count $kinds)
                set kind $kinds[$i]
            else if test (count $kinds) -gt 0; and string match -q -- '*...' $kinds[-1]
                set kind $kinds[-1]
            end
            test (string replace -r -- '\.\.\.$' '' $kind) = "$value"
    end
end

function __ebrainpool_dynamic --argument-names kind
    set -l bin (commandline -opc)[1]
    __ebrainpool_parse
    $bin __complete $kind $__ebp_args[1] 2>/dev/null
end

complete -c ebrainpool -f
`
