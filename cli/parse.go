package cli

import (
	"flag"
	"strings"
)

// parseArgs parses a command's arguments into fs, GNU style: flags may
// come before, between and after the other arguments, with one or two
// dashes, as --name=value or --name value (a boolean flag takes no value
// unless written --name=false); "--" ends the flags, as does, with
// verbatim > 0, the argument after the first verbatim ones (a command
// line to run keeps its own flags). fs.Args() are then the other
// arguments, in order. help is true when -h, -help or --help came among
// the flags (unless the command defines a flag of that name).
func parseArgs(fs *flag.FlagSet, args []string, verbatim int) (help bool, err error) {
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if verbatim > 0 && len(pos) >= verbatim {
			pos = append(pos, args[i:]...)
			break
		}
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		value, hasValue := "", false
		if n, v, ok := strings.Cut(name, "="); ok {
			name, value, hasValue = n, v, true
		}
		f := fs.Lookup(name)
		if f == nil {
			if name == "h" || name == "help" {
				help = true
				continue
			}
			if name == "" || strings.HasPrefix(name, "-") {
				return help, usageError("bad flag syntax %q", a)
			}
			return help, usageError("unknown flag --%s%s", name, didYouMean(suggestFlags(fs, name)))
		}
		if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
			if !hasValue {
				value = "true"
			}
		} else if !hasValue {
			if i+1 >= len(args) {
				return help, usageError("flag --%s needs a value", name)
			}
			i++
			value = args[i]
		}
		if err := fs.Set(name, value); err != nil {
			return help, usageError("invalid value %q for --%s: %v", value, name, err)
		}
	}
	// Parse records the arguments: after "--" all of them are arguments.
	if err := fs.Parse(append([]string{"--"}, pos...)); err != nil {
		return help, usageError("%v", err)
	}
	return help, nil
}

// suggestFlags are fs's flags nearest to name.
func suggestFlags(fs *flag.FlagSet, name string) []string {
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	near := nearest(name, names)
	for i, n := range near {
		near[i] = "--" + n
	}
	return near
}
