"""Subcommands of the `gridkit` CLI, one module each (see gridkit.cli.COMMANDS)."""
