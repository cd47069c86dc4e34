package ui

import (
	"fmt"
	"sort"
	"strings"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// stageStep is a stage's position (1-based) in dbusapi.Stages, 0 if
// unknown.
func stageStep(stage dbusapi.Stage) int {
	for i, s := range dbusapi.Stages {
		if s == stage {
			return i + 1
		}
	}
	return 0
}

// launchState is one launch the user started from this interface.
type launchState struct {
	id       string
	seq      int
	peer     string // fingerprint
	peerName string
	app      string // display name
	appID    string // "" in records from before it was kept
	stage    dbusapi.Stage
	done     bool
	exit     int
	err      string
	outcome  dbusapi.Outcome // how it ended ("" from a daemon that does not say, or Launch's own error)
	files    []string        // what it brings (broughtNames), nil for none
	// trusted: the app has trusted access to this display (the user's
	// choice for it, as the daemon's settings say at the launch).
	trusted bool
	// isolated: the app runs on a display of its own in the sandbox
	// (xpra), as the settings say at the launch.
	isolated bool
}

// broughtNames are the names of the files and folders a launch brings, as
// the user sees them: a folder's ending in "/", " (read-only)" after a
// read-only one (as the daemon names them in Sessions and requests).
func broughtNames(files []string, folders []dbusapi.Folder) []string {
	return dbusapi.Labels(files, folders)
}

// broughtText says what a launch brings, e.g. "Bringing notes.txt and
// Pictures/ (read-only)."; "" for nothing.
func broughtText(verb string, names []string) string {
	if len(names) == 0 {
		return ""
	}
	return verb + " " + andList(names) + "."
}

// andList joins names as a sentence does: "a", "a and b", "a, b and c".
func andList(names []string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// text is the launch's state in plain language, with what it brings.
func (l *launchState) text() string {
	t := plainText(l.stateText()) // a peer's error may carry anything
	switch {
	case l.done || len(l.files) == 0:
	case l.stage == dbusapi.StageRunning:
		t += "\n" + broughtText("It has your", l.files)
	default:
		t += "\n" + broughtText("Bringing", l.files)
	}
	if !l.done {
		t += "\n" + launchDisplayText(l.trusted, l.isolated)
	}
	return t
}

func (l *launchState) stateText() string {
	if l.done {
		return l.endText()
	}
	switch {
	case l.stage == dbusapi.StageRunning:
		return fmt.Sprintf("%s on %s is running.", l.app, l.peerName)
	case l.stage == "":
		return fmt.Sprintf("%s on %s: starting…", l.app, l.peerName)
	}
	return fmt.Sprintf("%s on %s: %s…", l.app, l.peerName, l.stage)
}

// fraction is how far the launch got, for a progress bar.
func (l *launchState) fraction() float64 {
	if l.done {
		return 1
	}
	return float64(stageStep(l.stage)) / float64(len(dbusapi.Stages))
}

// endText says how a finished launch ended: by its outcome, with the
// daemon's sentence where the outcome alone does not say enough.
func (l *launchState) endText() string {
	app, peer := l.app, l.peerName
	switch l.outcome {
	case dbusapi.OutcomeExited:
		if l.exit != 0 {
			return fmt.Sprintf("%s on %s ended with status %d.", app, peer, l.exit)
		}
		return fmt.Sprintf("%s on %s has closed.", app, peer)
	case dbusapi.OutcomeEnded:
		return fmt.Sprintf("You ended %s on %s.", app, peer)
	case dbusapi.OutcomeEndedByHost:
		return fmt.Sprintf("%s ended %s: the session was ended on that computer.", peer, app)
	case dbusapi.OutcomeDenied:
		return fmt.Sprintf("%s denied your request to run %s.", peer, app)
	case dbusapi.OutcomeNoAnswer:
		return fmt.Sprintf("Nobody on %s answered your request to run %s in time.", peer, app)
	case dbusapi.OutcomeBlocked:
		return fmt.Sprintf("%s does not accept your requests: you are blocked there.", peer)
	case dbusapi.OutcomeNotShared:
		return fmt.Sprintf("%s does not share %s (any more).", peer, app)
	}
	if l.err == "" {
		// A daemon that does not say the outcome: the exit status.
		if l.exit != 0 {
			return fmt.Sprintf("%s on %s ended with status %d.", app, peer, l.exit)
		}
		return fmt.Sprintf("%s on %s has closed.", app, peer)
	}
	verb := "did not start"
	if l.stage == dbusapi.StageRunning {
		verb = "stopped"
	}
	return fmt.Sprintf("%s on %s %s: %s", app, peer, verb, fullStop(l.err))
}

// failed reports whether the launch ended in a refusal or failure (shown
// as an error), not with the app's exit or a session someone ended.
func (l *launchState) failed() bool {
	if !l.done {
		return false
	}
	switch l.outcome {
	case dbusapi.OutcomeExited, dbusapi.OutcomeEnded, dbusapi.OutcomeEndedByHost:
		return false
	case "":
		return l.err != ""
	}
	return true
}

// fullStop ends a message with a full stop.
func fullStop(s string) string {
	s = strings.TrimSpace(s)
	if s != "" && !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// sentence capitalises an error message and ends it with a full stop.
func sentence(s string) string {
	s = strings.TrimSpace(plainText(s))
	if s == "" {
		return s
	}
	s = strings.ToUpper(s[:1]) + s[1:]
	if !strings.HasSuffix(s, ".") {
		s += "."
	}
	return s
}

// launches tracks the launches started here (keyed by launch id). It is
// used on the Fyne thread only.
type launches struct {
	byID map[string]*launchState
	seq  int
}

func newLaunches() *launches { return &launches{byID: map[string]*launchState{}} }

// started records a launch and returns it; err is Launch's own error (the
// launch then has no id and is finished at once).
func (ls *launches) started(id string, p dbusapi.Peer, app dbusapi.App, files []string, err error) *launchState {
	ls.seq++
	name := p.Name
	if name == "" {
		name = p.Short
	}
	l := &launchState{id: id, seq: ls.seq, peer: p.Fingerprint, peerName: name, app: app.Name, appID: app.ID, stage: dbusapi.StageAsking, files: files}
	if l.app == "" {
		l.app = app.ID
	}
	if err != nil {
		l.id = fmt.Sprintf("failed-%d", ls.seq)
		l.done, l.err = true, err.Error()
	}
	ls.byID[l.id] = l
	return l
}

// progress and finished ignore launches started elsewhere (the command
// line, through D-Bus): events are handled on the Fyne thread after the
// Launch call that made the id, so an unknown id is not ours.
func (ls *launches) progress(id string, stage dbusapi.Stage) {
	if l, ok := ls.byID[id]; ok && !l.done {
		l.stage = stage
	}
}

func (ls *launches) finished(id string, exit int, err string, outcome dbusapi.Outcome) {
	if l, ok := ls.byID[id]; ok {
		l.done, l.exit, l.err, l.outcome = true, exit, err, outcome
	}
}

// dismiss forgets a finished launch.
func (ls *launches) dismiss(id string) { delete(ls.byID, id) }

// list is the launches, newest first.
func (ls *launches) list() []*launchState {
	out := make([]*launchState, 0, len(ls.byID))
	for _, l := range ls.byID {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq > out[j].seq })
	return out
}

// active counts launches not finished yet.
func (ls *launches) active() int {
	n := 0
	for _, l := range ls.byID {
		if !l.done {
			n++
		}
	}
	return n
}
