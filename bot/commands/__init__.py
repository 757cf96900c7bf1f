"""The `folio` sub-commands, one module each (bot.cli parses the command line and dispatches)."""
