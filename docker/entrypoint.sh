#!/bin/sh
# Entry point of the hapvr-search images: one image, the role chosen by the command.
#   api [FLAGS]       hapvr serve on 0.0.0.0:${HAPVR_PORT:-8000}
#   worker [FLAGS]    hapvr worker (indexer workers on the job queue)
#   trainer [ARGS]    hapvr train ARGS
#   migrate           hapvr migrate (catalog schema; safe when several replicas start together)
#   anything else     run as given, e.g. `hapvr train DATA --out DIR` or `hapvr compare a.mp4 b.mp4`
# `exec` leaves the Python process in charge of the container's signals (SIGTERM on stop).
set -eu

role="${1:-api}"
[ "$#" -gt 0 ] && shift

case "$role" in
    api) exec hapvr serve --host 0.0.0.0 --port "${HAPVR_PORT:-8000}" "$@" ;;
    worker) exec hapvr worker "$@" ;;
    trainer) exec hapvr train "$@" ;;
    migrate) exec hapvr migrate "$@" ;;
    *) exec "$role" "$@" ;;
esac
