package ui

import (
	"fmt"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/container"
	"fyne.io/fyne/v2/theme"
	"fyne.io/fyne/v2/widget"

	"github.com/ebrainpool/ebrainpool/app/daemon"
	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// sessionsView is the window listing apps peers run here and apps we run
// on peers.
type sessionsView struct {
	u        *UI
	win      fyne.Window
	visible  bool
	incoming *fyne.Container
	outgoing *fyne.Container
	status   *widget.Label
	// cpu is each sandbox's CPU time at the last refresh.
	cpu map[string]cpuSample
}

// cpuSample is a sandbox's CPU time when the window last looked.
type cpuSample struct {
	cpu time.Duration
	at  time.Time
}

func newSessionsView(u *UI) *sessionsView {
	s := &sessionsView{u: u}
	s.win = u.app.NewWindow("eBrainPool: sessions")
	u.hideOnClose(s.win, func() { s.visible = false })
	s.incoming = container.NewVBox()
	s.outgoing = container.NewVBox()
	s.status = widget.NewLabel("")
	s.status.Wrapping = fyne.TextWrapWord
	in := widget.NewLabelWithStyle("Running here, for others", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	out := widget.NewLabelWithStyle("Yours, running on other computers", fyne.TextAlignLeading, fyne.TextStyle{Bold: true})
	s.win.SetContent(container.NewBorder(nil, s.status, nil, nil, container.NewVScroll(container.NewVBox(
		in, s.incoming, widget.NewSeparator(), out, s.outgoing))))
	s.win.Resize(fyne.NewSize(620, 380))
	s.refresh()
	return s
}

// usageText is a sandbox's CPU use, memory, process count and disk use,
// e.g. "CPU 12%, 120 MB, 7 processes, disk 3 of 2048 MB". CPU is the share of one CPU since the
// previous look (prev), or the CPU time so far at the first.
func usageText(info daemon.SandboxUsage, ok bool, prev *cpuSample, now time.Time) string {
	if !ok {
		return "sandbox not running"
	}
	procs := fmt.Sprintf("%d processes", info.Pids)
	if info.Pids == 1 {
		procs = "1 process"
	}
	return fmt.Sprintf("%s, %s, %s%s", cpuText(info.CPU, prev, now), megabytes(info.Memory), procs, diskText(info))
}

// diskText is what the sandbox's home takes of its size, e.g.
// ", disk 120 of 2048 MB" ("" when unknown).
func diskText(info daemon.SandboxUsage) string {
	if info.DiskLimit <= 0 {
		return ""
	}
	return fmt.Sprintf(", disk %.0f of %.0f MB", float64(info.Disk)/(1<<20), float64(info.DiskLimit)/(1<<20))
}

func cpuText(cpu time.Duration, prev *cpuSample, now time.Time) string {
	switch {
	case cpu < 0:
		return "CPU unknown"
	case prev == nil || !now.After(prev.at) || cpu < prev.cpu:
		return "CPU time " + cpu.Round(10*time.Millisecond).String()
	}
	return fmt.Sprintf("CPU %.0f%%", float64(cpu-prev.cpu)/float64(now.Sub(prev.at))*100)
}

func megabytes(b int64) string {
	if b <= 0 {
		return "memory unknown"
	}
	return fmt.Sprintf("%.0f MB", float64(b)/(1<<20))
}

// sinceText is when a session started and how long ago.
func sinceText(since, now time.Time) string {
	d := now.Sub(since).Round(time.Minute)
	switch {
	case d < time.Minute:
		return "since " + since.Format("15:04") + " (just now)"
	case d < time.Hour:
		return fmt.Sprintf("since %s (%d min)", since.Format("15:04"), int(d.Minutes()))
	}
	return fmt.Sprintf("since %s (%dh%02d)", since.Format("15:04"), int(d.Hours()), int(d.Minutes())%60)
}

// refresh redraws both lists from the backend.
func (s *sessionsView) refresh() {
	usage := map[string]daemon.SandboxUsage{}
	for _, i := range s.u.b.SandboxUsage() {
		usage[i.Peer] = i
	}
	// Refreshed, not only laid out: Add and RemoveAll do not mark the
	// window for a redraw.
	defer s.incoming.Refresh()
	defer s.outgoing.Refresh()
	s.incoming.RemoveAll()
	s.outgoing.RemoveAll()
	now := s.u.now()
	seen := map[string]cpuSample{}
	for _, x := range s.u.b.Sessions() {
		info, ok := usage[x.Peer]
		if x.Direction == dbusapi.DirectionIncoming {
			var prev *cpuSample
			if p, had := s.cpu[x.Peer]; had {
				prev = &p
			}
			if ok && info.CPU >= 0 {
				seen[x.Peer] = cpuSample{info.CPU, now}
			}
			s.incoming.Add(s.row(x, fmt.Sprintf("%s runs %s · %s · %s", x.PeerName, x.App,
				sinceText(time.Unix(x.Since, 0), now), usageText(info, ok, prev, now))+
				withFiles("\nWith "+x.PeerName+"'s", x.Files)))
		} else {
			state := ""
			if x.State != "" {
				state = " · " + string(x.State)
			}
			s.outgoing.Add(s.row(x, fmt.Sprintf("%s on %s · %s%s", x.App, x.PeerName,
				sinceText(time.Unix(x.Since, 0), now), state)+withFiles("\nWith your", x.Files)))
		}
	}
	s.cpu = seen
	if len(s.incoming.Objects) == 0 {
		s.incoming.Add(widget.NewLabel("Nobody is running an app here."))
	}
	if len(s.outgoing.Objects) == 0 {
		s.outgoing.Add(widget.NewLabel("You are not running apps on other computers."))
	}
}

// withFiles names the files and folders a session brought, after its
// line: "\nWith your files: notes.txt and Pictures/."; "" for none.
func withFiles(prefix string, files []string) string {
	if len(files) == 0 {
		return ""
	}
	return prefix + " files: " + andList(files) + "."
}

func (s *sessionsView) row(x dbusapi.Session, text string) fyne.CanvasObject {
	id, app := x.ID, x.App
	end := widget.NewButtonWithIcon("End", theme.MediaStopIcon(), func() {
		if err := s.u.b.EndSession(id); err != nil {
			s.status.SetText(sentence(fmt.Sprintf("could not end %s: %v", app, err)))
			s.status.Importance = widget.DangerImportance
		} else {
			s.status.SetText("Ended " + app + ".")
			s.status.Importance = widget.MediumImportance
		}
		s.status.Refresh()
		s.refresh()
	})
	l := widget.NewLabel(text)
	l.Wrapping = fyne.TextWrapWord
	return container.NewBorder(nil, nil, nil, end, l)
}
