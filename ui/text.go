package ui

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// plainText is s as a label can show it: tabs as spaces, \r\n and \r as
// newlines, other control characters (an escape sequence from a remote
// error, say) and invalid UTF-8 left out; a label would draw them as "�".
func plainText(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	var b strings.Builder
	for i, w := 0, 0; i < len(s); i += w {
		r, size := utf8.DecodeRuneInString(s[i:])
		w = size
		switch {
		case r == utf8.RuneError && size <= 1:
		case r == '\t':
			b.WriteByte(' ')
		case r == '\r':
			b.WriteByte('\n')
		case r == '\n':
			b.WriteRune(r)
		case unicode.IsControl(r):
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
