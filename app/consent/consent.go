// Package consent decides whether a peer may launch an app on this host:
// remembered decisions, a block list, one pending prompt per peer, a timeout
// that means deny, and rate limits so that a flood of requests never becomes
// a flood of prompts. It has no GUI: the accept popup and the CLI both
// answer through Engine.Answer.
package consent

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// Request is one launch request as the host sees it. The app is what a
// remembered decision is about: its desktop ID and the command it runs
// (App, its display name, is only shown).
type Request struct {
	ID        string `json:"id"`
	Peer      string `json:"peer"` // verified key fingerprint: the identity
	PeerName  string `json:"peer_name"`
	Host      string `json:"host"`
	From      string `json:"from"`       // source address
	App       string `json:"app"`        // display name
	AppID     string `json:"app_id"`     // desktop file ID, e.g. "org.gnome.Calculator"
	Command   string `json:"command"`    // what runs: the Exec line's argv, shell-quoted
	FirstTime bool   `json:"first_time"` // never seen this peer before
	// Files are what the requester brings into the app (names only: the
	// contents stay with the requester); not part of what is remembered.
	Files []File `json:"files,omitempty"`
	// Display is how the requester shows the app: "protected" (the app
	// sees and drives only its own windows), "trusted" (everything on the
	// requester's display), "" (an older requester that does not say).
	// Not part of what is remembered.
	Display  string    `json:"display,omitempty"`
	Asked    time.Time `json:"asked"`
	Deadline time.Time `json:"deadline"` // no answer by then means deny
}

// File is a file or folder a requester brings, by name.
type File struct {
	Name     string `json:"name"`
	Folder   bool   `json:"folder,omitempty"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// Answer is the host user's reply to a prompt.
type Answer struct {
	Allow    bool
	Remember bool // remember for this peer and app (see Rules)
	Block    bool // block the peer (implies deny)
}

// Reason says why a request was decided as it was.
type Reason string

const (
	ByUser        Reason = "answered by the user"
	Remembered    Reason = "remembered decision"
	TimedOut      Reason = "no answer before the timeout"
	Blocked       Reason = "the peer is blocked"
	Busy          Reason = "a request from this peer is already waiting for an answer"
	RateLimited   Reason = "too many requests; try again later"
	Canceled      Reason = "the request was canceled"
	EngineClosing Reason = "the host is shutting down"
)

// Outcome is the decision on a request.
type Outcome struct {
	Allowed bool
	Reason  Reason
}

// EventKind says what an Event is about.
type EventKind string

// Event kinds.
const (
	EventPrompt   EventKind = "prompt"   // a prompt appeared
	EventResolved EventKind = "resolved" // a prompt was decided (Outcome)
	// EventRulesChanged: the remembered decisions or the block list
	// changed (Rules has them).
	EventRulesChanged EventKind = "rules-changed"
)

// Event tells watchers (the popup, the D-Bus API) about prompts and
// changed rules.
type Event struct {
	Kind    EventKind
	Request Request
	Outcome Outcome // for EventResolved
}

// Rules are the persistent decisions. A remembered allow covers one app
// of the host exactly: its desktop ID and its command, so another app with
// the same name, or the same app once its command changed, asks again. A
// remembered deny covers the app by its ID whatever its command becomes
// (a deny never lets anything run; an update should not bring back the
// prompts the user refused); a deny kept from the name-keyed rules of
// rules version 1 (ID "") covers the apps of that name.
type Rules struct {
	Version int                  `json:"version"` // RulesVersion when saved
	Allowed map[string][]AppRule `json:"allowed"` // peer -> apps always allowed
	Denied  map[string][]AppRule `json:"denied"`  // peer -> apps always denied
	Blocked map[string]string    `json:"blocked"` // peer -> name when blocked
}

// RulesVersion is the version of Rules this build writes.
const RulesVersion = 2

// AppRule is the app a remembered decision is about.
type AppRule struct {
	ID      string `json:"id"`             // desktop file ID ("" only for a version 1 deny)
	Command string `json:"command"`        // an allow's command
	Name    string `json:"name,omitempty"` // the display name then (a version 1 deny's key; else only shown)
	// Since is when the decision was remembered (zero for rules saved
	// before it was recorded).
	Since time.Time `json:"since,omitzero"`
}

// ruleOf is the rule a remembered answer to req makes.
func ruleOf(req Request, now time.Time) AppRule {
	return AppRule{ID: req.AppID, Command: req.Command, Name: req.App, Since: now}
}

// allows reports whether an allow rule covers req: the same app, the
// same command.
func (r AppRule) allows(req Request) bool {
	return r.ID != "" && r.ID == req.AppID && r.Command == req.Command
}

// denies reports whether a deny rule covers req: the same app (or, for a
// version 1 rule, an app of that name).
func (r AppRule) denies(req Request) bool {
	if r.ID == "" {
		return r.Name != "" && r.Name == req.App
	}
	return r.ID == req.AppID
}

// Store persists Rules.
type Store interface {
	Load() (Rules, error)
	Save(Rules) error
}

// Config configures an Engine. Zero values take the defaults.
type Config struct {
	Timeout time.Duration // default 60s
	// PerPeer and Overall limit prompts: at most Burst at once, refilled at
	// Every. Defaults: per peer 3 per 20s; overall 10 per 6s.
	PerPeer, Overall Rate
	MaxPending       int // overall pending prompts (default 16)
	Store            Store
	Now              func() time.Time
}

// Rate is a token bucket.
type Rate struct {
	Burst int
	Every time.Duration
}

// Engine is the consent engine. It is safe for concurrent use.
type Engine struct {
	cfg Config

	mu       sync.Mutex
	rules    Rules
	pending  map[string]*pending // by request id
	byPeer   map[string]string   // peer -> pending request id
	buckets  map[string]*bucket  // per peer
	overall  bucket
	watchers map[chan Event]struct{}
	closed   bool
}

type pending struct {
	req    Request
	answer chan reply
}

// reply is an answer and who gave it (the user, a block, shutdown).
type reply struct {
	Answer
	reason Reason
}

// New creates an engine, loading the rules from the store.
func New(cfg Config) (*Engine, error) {
	if cfg.Timeout <= 0 {
		cfg.Timeout = 60 * time.Second
	}
	if cfg.PerPeer.Burst <= 0 {
		cfg.PerPeer = Rate{Burst: 3, Every: 20 * time.Second}
	}
	if cfg.Overall.Burst <= 0 {
		cfg.Overall = Rate{Burst: 10, Every: 6 * time.Second}
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 16
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	e := &Engine{cfg: cfg, pending: map[string]*pending{}, byPeer: map[string]string{},
		buckets: map[string]*bucket{}, watchers: map[chan Event]struct{}{}}
	e.overall = newBucket(cfg.Overall, cfg.Now())
	if cfg.Store != nil {
		r, err := cfg.Store.Load()
		if err != nil {
			return nil, fmt.Errorf("loading consent rules: %w", err)
		}
		e.rules = r
	}
	e.rules.init()
	return e, nil
}

func (r *Rules) init() {
	r.Version = RulesVersion
	if r.Allowed == nil {
		r.Allowed = map[string][]AppRule{}
	}
	if r.Denied == nil {
		r.Denied = map[string][]AppRule{}
	}
	if r.Blocked == nil {
		r.Blocked = map[string]string{}
	}
}

func anyRule(list []AppRule, match func(AppRule) bool) bool {
	for _, r := range list {
		if match(r) {
			return true
		}
	}
	return false
}

// Ask decides on a request, prompting the user if no rule applies, and
// waits for the answer, the timeout or ctx. Fields ID, Asked and Deadline
// are filled in. Refusals that need no prompt return at once.
func (e *Engine) Ask(ctx context.Context, req Request) (Outcome, error) {
	if req.Peer == "" || req.AppID == "" {
		return Outcome{}, errors.New("consent: request without peer or app ID")
	}
	if req.App == "" {
		req.App = req.AppID
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return Outcome{Reason: EngineClosing}, nil
	}
	if _, ok := e.rules.Blocked[req.Peer]; ok {
		e.mu.Unlock()
		return Outcome{Reason: Blocked}, nil
	}
	if anyRule(e.rules.Denied[req.Peer], func(r AppRule) bool { return r.denies(req) }) {
		e.mu.Unlock()
		return Outcome{Reason: Remembered}, nil
	}
	if anyRule(e.rules.Allowed[req.Peer], func(r AppRule) bool { return r.allows(req) }) {
		e.mu.Unlock()
		return Outcome{Allowed: true, Reason: Remembered}, nil
	}
	if _, ok := e.byPeer[req.Peer]; ok {
		e.mu.Unlock()
		return Outcome{Reason: Busy}, nil
	}
	now := e.cfg.Now()
	b := e.buckets[req.Peer]
	if b == nil {
		nb := newBucket(e.cfg.PerPeer, now)
		b = &nb
		e.buckets[req.Peer] = b
	}
	if len(e.pending) >= e.cfg.MaxPending || !b.ok(now) || !e.overall.ok(now) {
		e.mu.Unlock()
		return Outcome{Reason: RateLimited}, nil
	}
	b.take()
	e.overall.take()
	req.ID = newID()
	req.Asked = now
	timeout := e.cfg.Timeout
	req.Deadline = now.Add(timeout)
	p := &pending{req: req, answer: make(chan reply, 1)}
	e.pending[req.ID] = p
	e.byPeer[req.Peer] = req.ID
	e.notify(Event{Kind: EventPrompt, Request: req})
	e.mu.Unlock()

	timer := time.NewTimer(timeout)
	defer timer.Stop()
	var out Outcome
	select {
	case a := <-p.answer:
		out = Outcome{Allowed: a.Allow && !a.Block, Reason: a.reason}
	case <-timer.C:
		out = Outcome{Reason: TimedOut}
	case <-ctx.Done():
		out = Outcome{Reason: Canceled}
	}
	e.mu.Lock()
	delete(e.pending, req.ID)
	delete(e.byPeer, req.Peer)
	e.notify(Event{Kind: EventResolved, Request: req, Outcome: out})
	e.mu.Unlock()
	return out, nil
}

// SetTimeout changes how long a prompt waits for an answer (<= 0: the
// default) for the requests asked from now on; prompts already shown keep
// the deadline they were given.
func (e *Engine) SetTimeout(d time.Duration) {
	if d <= 0 {
		d = 60 * time.Second
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cfg.Timeout = d
}

// ErrUnknownRequest means the request is no longer pending.
var ErrUnknownRequest = errors.New("no such pending request (answered, timed out or canceled)")

// Answer answers a pending prompt. Remember and Block are persisted before
// the requester learns the decision.
func (e *Engine) Answer(id string, a Answer) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	p, ok := e.pending[id]
	if !ok {
		return fmt.Errorf("answering %s: %w", id, ErrUnknownRequest)
	}
	if a.Block || a.Remember {
		next := e.rules.clone()
		switch {
		case a.Block:
			next.Blocked[p.req.Peer] = p.req.PeerName
		case a.Allow:
			// One allow per app: the command allowed last.
			next.Allowed[p.req.Peer] = append(removeID(next.Allowed[p.req.Peer], p.req.AppID), ruleOf(p.req, e.cfg.Now()))
		default:
			next.Denied[p.req.Peer] = append(removeID(next.Denied[p.req.Peer], p.req.AppID), ruleOf(p.req, e.cfg.Now()))
		}
		if err := e.save(next); err != nil {
			return err
		}
	}
	select {
	case p.answer <- reply{a, ByUser}:
	default: // already answered
		return fmt.Errorf("answering %s: %w", id, ErrUnknownRequest)
	}
	return nil
}

func (r Rules) clone() Rules {
	n := Rules{Version: RulesVersion, Allowed: map[string][]AppRule{}, Denied: map[string][]AppRule{}, Blocked: map[string]string{}}
	for k, v := range r.Allowed {
		n.Allowed[k] = append([]AppRule(nil), v...)
	}
	for k, v := range r.Denied {
		n.Denied[k] = append([]AppRule(nil), v...)
	}
	for k, v := range r.Blocked {
		n.Blocked[k] = v
	}
	return n
}

// save persists next and makes it current (called with e.mu held);
// watchers are told.
func (e *Engine) save(next Rules) error {
	if e.cfg.Store != nil {
		if err := e.cfg.Store.Save(next); err != nil {
			return fmt.Errorf("saving consent rules: %w", err)
		}
	}
	e.rules = next
	e.notify(Event{Kind: EventRulesChanged})
	return nil
}

// Block blocks a peer: its requests are refused without a prompt, and a
// pending prompt from it is denied.
func (e *Engine) Block(peer, name string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	next := e.rules.clone()
	next.Blocked[peer] = name
	if err := e.save(next); err != nil {
		return err
	}
	if id, ok := e.byPeer[peer]; ok {
		select {
		case e.pending[id].answer <- reply{Answer{Block: true}, Blocked}:
		default:
		}
	}
	return nil
}

// Unblock removes a peer from the block list.
func (e *Engine) Unblock(peer string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	next := e.rules.clone()
	delete(next.Blocked, peer)
	return e.save(next)
}

// Forget drops the remembered decisions for a peer about the app of that
// desktop ID (all apps if appID is "").
func (e *Engine) Forget(peer, appID string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	next := e.rules.clone()
	if appID == "" {
		delete(next.Allowed, peer)
		delete(next.Denied, peer)
	} else {
		next.Allowed[peer] = removeID(next.Allowed[peer], appID)
		next.Denied[peer] = removeID(next.Denied[peer], appID)
	}
	return e.save(next)
}

// removeID is list without the rules about the app of that ID.
func removeID(list []AppRule, id string) []AppRule {
	var out []AppRule
	for _, r := range list {
		if r.ID != id {
			out = append(out, r)
		}
	}
	return out
}

// Rules returns a copy of the current rules.
func (e *Engine) Rules() Rules {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rules.clone()
}

// Pending lists the prompts waiting for an answer, oldest first.
func (e *Engine) Pending() []Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]Request, 0, len(e.pending))
	for _, p := range e.pending {
		out = append(out, p.req)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Asked.Before(out[j].Asked) })
	return out
}

// Watch returns a channel of prompt events until ctx ends. A watcher that
// does not keep up misses events rather than slowing the engine down.
func (e *Engine) Watch(ctx context.Context) <-chan Event {
	ch := make(chan Event, 64)
	e.mu.Lock()
	e.watchers[ch] = struct{}{}
	e.mu.Unlock()
	go func() {
		<-ctx.Done()
		e.mu.Lock()
		delete(e.watchers, ch)
		close(ch)
		e.mu.Unlock()
	}()
	return ch
}

func (e *Engine) notify(ev Event) {
	for ch := range e.watchers {
		select {
		case ch <- ev:
		default:
		}
	}
}

// Close denies every pending prompt and refuses new requests.
func (e *Engine) Close() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	for _, p := range e.pending {
		select {
		case p.answer <- reply{reason: EngineClosing}:
		default:
		}
	}
}

func newID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// bucket is a token bucket refilled one token per Every, up to Burst.
type bucket struct {
	rate   Rate
	tokens float64
	last   time.Time
}

func newBucket(r Rate, now time.Time) bucket {
	return bucket{rate: r, tokens: float64(r.Burst), last: now}
}

func (b *bucket) ok(now time.Time) bool {
	if b.rate.Every > 0 {
		b.tokens += float64(now.Sub(b.last)) / float64(b.rate.Every)
		if b.tokens > float64(b.rate.Burst) {
			b.tokens = float64(b.rate.Burst)
		}
	}
	b.last = now
	return b.tokens >= 1
}

func (b *bucket) take() { b.tokens-- }
