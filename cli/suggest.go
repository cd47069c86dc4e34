package cli

import (
	"sort"
	"strings"
)

// editDistance is the Levenshtein distance between a and b (insertions,
// deletions and substitutions of runes) where swapping two neighbours
// also counts as one edit (optimal string alignment): "rnu" is one edit
// from "run".
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// nearest are the candidates a user probably meant by typed: those that
// start with it (at least two letters typed), else those within a small
// edit distance (one edit for short words, two from five letters, a third
// of the length from nine), the closest first; at most three.
func nearest(typed string, candidates []string) []string {
	typed = strings.ToLower(typed)
	var prefix []string
	for _, c := range candidates {
		if len(typed) >= 2 && strings.HasPrefix(strings.ToLower(c), typed) {
			prefix = append(prefix, c)
		}
	}
	if len(prefix) > 0 {
		sort.Strings(prefix)
		return limit(dedupe(prefix), 3)
	}
	maxDist := 1
	switch n := len([]rune(typed)); {
	case n >= 9:
		maxDist = n / 3
	case n >= 5:
		maxDist = 2
	}
	type scored struct {
		c string
		d int
	}
	var near []scored
	for _, c := range candidates {
		if d := editDistance(typed, strings.ToLower(c)); d <= maxDist {
			near = append(near, scored{c, d})
		}
	}
	sort.SliceStable(near, func(i, j int) bool {
		if near[i].d != near[j].d {
			return near[i].d < near[j].d
		}
		return near[i].c < near[j].c
	})
	var out []string
	for _, s := range near {
		out = append(out, s.c)
	}
	return limit(dedupe(out), 3)
}

func dedupe(s []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

func limit(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// suggestCommands are the visible commands nearest to a mistyped command
// line: words is the mistyped word, or a group and a mistyped word of it
// ("sandbox lst"). A single word is also compared with the second word
// of grouped commands ("list" → "sandbox list").
func suggestCommands(cmds []*Command, words []string) []string {
	if len(words) == 2 {
		var subs []string
		for _, c := range group(cmds, words[0]) {
			subs = append(subs, strings.Fields(c.Name)[1])
		}
		out := nearest(words[1], subs)
		for i, s := range out {
			out[i] = words[0] + " " + s
		}
		return out
	}
	var names []string
	byWord := map[string]string{} // a word typed alone → the command it stands for
	for _, c := range cmds {
		if c.Hidden {
			continue
		}
		w := strings.Fields(c.Name)
		if _, ok := byWord[w[0]]; !ok {
			names = append(names, w[0])
			byWord[w[0]] = w[0]
		}
		if len(w) > 1 {
			if _, ok := byWord[w[1]]; !ok {
				names = append(names, w[1])
				byWord[w[1]] = c.Name
			}
		}
	}
	for _, pseudo := range []string{"help", "version"} {
		if _, ok := byWord[pseudo]; !ok {
			names = append(names, pseudo)
			byWord[pseudo] = pseudo
		}
	}
	out := nearest(words[0], names)
	for i, s := range out {
		out[i] = byWord[s]
	}
	return dedupe(out)
}
