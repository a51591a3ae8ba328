"""One module per CLI subcommand; each only turns arguments into API calls."""
