package cli

// guiCommands are the desktop app's commands; "gui" runs when ebrainpool is
// started without a subcommand.
func guiCommands() []*Command { return nil }
