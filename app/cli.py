"""The `hapvr` command: one entry point whose subcommands live beside the code they drive.

Each subcommand module exposes `register(subparsers)`, adding its parser and setting
`func` to a callable that takes the parsed namespace and returns an exit code. Modules are
imported when the CLI starts, so they keep heavy imports (torch, faiss) inside their `run`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Subcommand modules, in the order `hapvr --help` lists them.
COMMAND_MODULES = (
    "app.commands.serve",
    "app.commands.ingest",
    "app.commands.search",
    "app.commands.duplicates",
    "indexer.commands.worker",
    "indexer.commands.migrate",
    "indexer.commands.reindex",
    "indexer.commands.keys",
    "indexer.commands.compare",
    "model.commands.fit_pca",
    "model.train.command",
    "model.train.descriptor_command",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hapvr", description="Near-duplicate video search.")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
