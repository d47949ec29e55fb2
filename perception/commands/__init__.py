"""One module per `perception` sub-command: `add_arguments(parser)` and `run(args) -> int`.

Heavy imports (torch, zmq) happen inside `run`, so `perception --help` stays fast.
"""
