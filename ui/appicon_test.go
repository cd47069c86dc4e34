package ui

import (
	"bytes"
	"testing"

	"fyne.io/fyne/v2/test"
	"fyne.io/fyne/v2/widget"

	"github.com/ebrainpool/ebrainpool/app/dbusapi"
)

// An app without an icon is shown with the generic application icon, not
// a document's; it draws (the SVG renders).
func TestAppWithoutIconGetsTheGenericAppIcon(t *testing.T) {
	f := newFake()
	bob := peer("bob", "bob-laptop", "verified")
	f.peers = []dbusapi.Peer{bob}
	f.apps[bob.Fingerprint] = []dbusapi.App{{ID: "xterm", Name: "XTerm"}}
	u := newTestUI(t, f, nil)
	u.ShowPeers()
	u.peers.selectPeer(bob.Fingerprint)
	icon := first(u.peers.apps, func(*widget.Icon) bool { return true })
	if icon == nil || icon.Resource == nil {
		t.Fatal("no icon in XTerm's row")
	}
	if !bytes.Contains(icon.Resource.Content(), []byte("M3 3h18")) {
		t.Errorf("XTerm's row shows %s, want the generic application icon", icon.Resource.Name())
	}
	w := test.NewWindow(icon)
	defer w.Close()
	img := w.Canvas().Capture()
	if img.Bounds().Empty() {
		t.Error("the icon did not draw")
	}
}
