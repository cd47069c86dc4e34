package tunnel

import (
	"slices"
	"strings"
	"testing"
)

func TestRelayEnv(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		want []string
	}{
		{"empty", []string{}, []string{"GODEBUG=" + relaySchedtrace}},
		{"kept", []string{"PATH=/bin", "HOME=/h"}, []string{"PATH=/bin", "HOME=/h", "GODEBUG=" + relaySchedtrace}},
		{"added to GODEBUG", []string{"GODEBUG=gctrace=1", "A=b"}, []string{"A=b", "GODEBUG=gctrace=1," + relaySchedtrace}},
		{"a schedtrace given stays", []string{"GODEBUG=schedtrace=1000"}, []string{"GODEBUG=schedtrace=1000"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := RelayEnv(tc.env); !slices.Equal(got, tc.want) {
				t.Errorf("RelayEnv(%q) = %q, want %q", tc.env, got, tc.want)
			}
		})
	}
	t.Run("nil is this process's environment", func(t *testing.T) {
		t.Setenv("EBP_RELAYENV_TEST", "x")
		got := RelayEnv(nil)
		if !slices.Contains(got, "EBP_RELAYENV_TEST=x") || !slices.ContainsFunc(got, func(e string) bool {
			return strings.HasPrefix(e, "GODEBUG=") && strings.Contains(e, "schedtrace=")
		}) {
			t.Errorf("RelayEnv(nil) = %q", got)
		}
	})
}
