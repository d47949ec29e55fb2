"""Message types other packages define (skills' Alert, ...), found through entry points.

A package above perception registers its message module in the `perception.messages` group
(pyproject.toml); importing it registers its types with the bus codec. Tools that decode anything on
the bus (`echo`, the recorder's summaries) call `load_message_types()`, and perception imports no
package above it.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

MESSAGES_GROUP = "perception.messages"


def load_message_types() -> list[str]:
    """Import perception's messages and every plugged-in message module; returns the module names."""
    import perception.messages  # noqa: F401  registers Frame, Embedding, Event, Caption ...

    names = ["perception.messages"]
    for ep in entry_points(group=MESSAGES_GROUP):
        importlib.import_module(ep.value)
        names.append(ep.value)
    return names
