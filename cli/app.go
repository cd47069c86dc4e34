package cli

// appCommands are the request-flow subcommands (daemon, peers, run, ...).
func appCommands() []*Command { return nil }
