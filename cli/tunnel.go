package cli

// tunnelCommands are the tunnel subcommands (grant, guest endpoint).
func tunnelCommands() []*Command { return nil }
