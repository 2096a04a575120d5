"""The `alertd` command and its subcommands (the entry point is `alertd.cli.main:main`)."""
