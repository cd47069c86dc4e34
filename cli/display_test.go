package cli

import (
	"strings"
	"testing"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

func (f *fakeDaemon) SetTrustedDisplay(peer, app string, trusted bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.trusted == nil {
		f.trusted = map[string]bool{}
	}
	f.trusted[peer+" "+app] = trusted
	return nil
}

func (f *fakeDaemon) TrustedDisplay(peer, app string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.trusted[peer+" "+app], nil
}

func (f *fakeDaemon) SetDisplayMode(peer, app string, mode dbusapi.DisplayMode) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.modes == nil {
		f.modes = map[string]dbusapi.DisplayMode{}
	}
	f.modes[peer+" "+app] = mode
	return nil
}

func (f *fakeDaemon) DisplayMode(peer, app string) (dbusapi.DisplayMode, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if m, ok := f.modes[peer+" "+app]; ok {
		return m, nil
	}
	return dbusapi.DisplayProtected, nil
}

// TestRunDisplayMode: run says which display mode the app gets; the
// default is protected, --trusted-display is remembered for that app (and
// says what the app can then do) until --protected-display.
func TestRunDisplayMode(t *testing.T) {
	startFake(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "bob", "xlogo"}, "xlogo: display: protected: the app sees and controls only its own windows"},
		{[]string{"run", "--trusted-display", "bob", "xlogo"}, "xlogo: display: TRUSTED: the app can see your whole screen and every window and type into any of them"},
		{[]string{"run", "bob", "xlogo"}, "xlogo: display: TRUSTED"},
		{[]string{"run", "bob", "xterm"}, "xterm: display: protected"},
		{[]string{"run", "bob", "xlogo", "--protected-display"}, "xlogo: display: protected"},
		{[]string{"run", "bob", "xlogo"}, "xlogo: display: protected"},
		{[]string{"run", "--isolated-display", "bob", "xlogo"}, "xlogo: display: isolated: the app draws on a display of its own in the sandbox"},
		{[]string{"run", "bob", "xlogo"}, "xlogo: display: isolated"},
		{[]string{"run", "bob", "xlogo", "--trusted-display"}, "xlogo: display: TRUSTED"},
		{[]string{"run", "bob", "xlogo", "--protected-display"}, "xlogo: display: protected"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			code, _, errs := run(t, tc.args...)
			if code != 0 || !strings.Contains(errs, tc.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant %q", code, errs, tc.want)
			}
		})
	}
	for _, both := range [][]string{{"--trusted-display", "--protected-display"}, {"--isolated-display", "--trusted-display"}} {
		if code, _, errs := run(t, append(append([]string{"run"}, both...), "bob", "xlogo")...); code != ExitUsage {
			t.Errorf("%v: exit %d, stderr %s", both, code, errs)
		}
	}
}
