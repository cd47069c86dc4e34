package ui

import (
	"reflect"
	"testing"
	"time"

	"fyne.io/fyne/v2"
	"fyne.io/fyne/v2/test"
)

// Keys and clicks that reach the popup before it is armed (typing meant
// for another window) change nothing: no answer, no Remember ticked,
// nothing focused, and each key pushes the arming back.
func TestPromptIgnoresInputUntilArmed(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	f := newFake()
	clock := &fakeClock{start}
	u := newTestUI(t, f, clock)
	u.showPrompt(request(false, start.Add(30*time.Second)))
	p := u.prompts["req-1"]
	c := p.win.Canvas()
	typeBurst := func() {
		// "\t \t\n" as xdotool types it into whatever has the focus.
		for _, k := range []fyne.KeyName{fyne.KeyTab, fyne.KeySpace, fyne.KeyTab, fyne.KeyReturn} {
			if c.Focused() != nil {
				test.Type(c.Focused(), string(k))
			}
			c.FocusNext()
			if c.Focused() != nil {
				c.Focused().TypedKey(&fyne.KeyEvent{Name: k})
			} else if c.OnTypedKey() != nil {
				c.OnTypedKey()(&fyne.KeyEvent{Name: k})
			}
			if k == fyne.KeySpace && c.OnTypedRune() != nil {
				c.OnTypedRune()(' ')
			}
		}
	}
	for _, tc := range []struct {
		name  string
		at    time.Duration
		typed bool
		armed bool
	}{
		{"at once", 0, true, false},
		{"half a second later", 500 * time.Millisecond, true, false},
		{"1.2 s: the last key was 0.7 s ago", 1200 * time.Millisecond, false, false},
		{"1.6 s: a second without input", 1600 * time.Millisecond, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock.t = start.Add(tc.at)
			p.tick()
			if tc.typed {
				typeBurst()
				for _, b := range []string{"Allow", "Deny", "Block bob"} {
					test.Tap(findButton(p.win.Content(), b))
				}
				test.Tap(p.remember)
			}
			if len(f.answers) != 0 {
				t.Fatalf("answered by input before it was armed: %+v", f.answers)
			}
			if p.remember.Checked {
				t.Fatal("Remember ticked by input before it was armed")
			}
			if c.Focused() != nil {
				t.Fatalf("%T focused before the popup was armed", c.Focused())
			}
			if p.armed() != tc.armed {
				t.Fatalf("armed = %v, want %v", p.armed(), tc.armed)
			}
		})
	}
	// Armed: a deliberate click answers.
	test.Tap(findButton(p.win.Content(), "Allow"))
	if want := []answer{{"req-1", true, false, false}}; !reflect.DeepEqual(f.answers, want) {
		t.Errorf("answers %+v, want %+v", f.answers, want)
	}
}

// armNow arms a test's popup as the second without input would.
func armNow(p *prompt, clock *fakeClock) {
	clock.t = clock.t.Add(armDelay)
	p.tick()
}
