"""`perception mcp`: a Model Context Protocol server over a running pipeline, for LLM agent planners.

- pipeline.py: the bus side. `Pipeline` calls the world node's RPC methods with bounded timeouts and turns
  every failure into a `PipelineError` an agent can act on; `BusFeed` follows captions/ and events/ for
  change notifications; the `view_*` functions cut world records down to what fits a context window.
- server.py: the MCP side (the official `mcp` SDK): tools, resources, subscriptions and notifications.
- command.py: the CLI command (stdio, or streamable HTTP with the bus's "network needs auth" rule).

Only command.py is imported by `perception --help`; the SDK is imported when the command runs.
docs/agents.md is the user's manual.
"""
