"""The harness command line: argument parsing, one module per subcommand, exit codes."""
