package ui

import "testing"

func TestPlainText(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "bob: denied", "bob: denied"},
		{"newline kept", "line 1\n  fix: run it", "line 1\n  fix: run it"},
		{"tab", "a\tb", "a b"},
		{"CRLF and CR", "a\r\nb\rc", "a\nb\nc"},
		{"escape sequence", "\x1b[31mred\x1b[0m", "[31mred[0m"},
		{"NUL and DEL", "a\x00b\x7fc", "abc"},
		{"invalid UTF-8", "a\xffb", "ab"},
		{"non-ASCII kept", "Grüße · ✓", "Grüße · ✓"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := plainText(tc.in); got != tc.want {
				t.Errorf("plainText(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}
