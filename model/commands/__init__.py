"""Subcommands of `hapvr` that drive the model: each module has `register(subparsers)`."""
