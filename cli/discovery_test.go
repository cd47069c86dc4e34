package cli

import (
	"strings"
	"testing"

	"github.com/ebrainpool/ebrainpool/internal/testenv"
)

// `peers` says on stderr why the network's peers are missing (a real
// daemon started without discovery).
func TestPeersSaysDiscoveryIsOff(t *testing.T) {
	bus := testenv.PrivateBus(t)
	t.Setenv("DBUS_SESSION_BUS_ADDRESS", bus.Addr)
	realDaemonPrepared(t, bus.Addr, func(string) {})
	waitAPI(t)
	code, out, errs := run(t, "peers")
	if code != ExitOK || !strings.Contains(out, "NAME") {
		t.Fatalf("peers: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	if !strings.Contains(errs, "discovery is off (started with --no-discovery)") {
		t.Errorf("stderr %q, want why discovery is off", errs)
	}
	// --json stays JSON only.
	if code, out, errs = run(t, "peers", "--json"); code != ExitOK || strings.TrimSpace(out) != "[]" || errs != "" {
		t.Errorf("peers --json: exit %d, stdout %q, stderr %q", code, out, errs)
	}
}
