"""Flower's configuration for httpov, installed with the package: `httpov flower` runs Flower with `--conf` naming
this file, wherever it is started. Flower executes it (it is not imported by httpov).

Flower shows every task's arguments and can revoke tasks and shut render nodes down, and by itself it listens on
every address without a login. Here it listens on 127.0.0.1 unless `--address` (or FLOWER_ADDRESS) says otherwise,
and it refuses to start without a login: FLOWER_BASIC_AUTH=user:password (or `--basic-auth`, or OAuth with `--auth`).
"""
import sys

from tornado.options import options as _given  # what the environment and command line set, read before this file

address = _given.address or "127.0.0.1"

if not (_given.basic_auth or _given.auth):
    sys.exit("httpov flower: Flower needs a login, it shows and controls every render task: "
             "set FLOWER_BASIC_AUTH=user:password (or pass --basic-auth=user:password, or OAuth with --auth)")
