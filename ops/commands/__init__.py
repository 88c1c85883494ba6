"""One module per `unisar` sub-command (a package for `data`); each exposes `register(subparsers)`.

A module's `register` adds its parser and sets `func=` to a callable taking the parsed
args and returning an exit code. Heavy imports (torch, aiokafka) happen inside `func`,
so `unisar --help` stays fast.
"""
COMMANDS = ("broker", "produce", "worker", "inspect", "fit", "eval", "data", "train", "serve", "demo", "compare")
