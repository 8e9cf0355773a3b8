"""Service-side `hapvr` subcommands (serve, worker)."""
