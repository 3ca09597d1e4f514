"""One module per ``deeplab`` subcommand (see deeplab.cli)."""
