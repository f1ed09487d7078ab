"""The contract of ase-daemon in one place: what travels between the daemon and its clients.

    wire            frames and headers, error codes and their fields, ops and their argument specs (watch ops
                    included), request/reply records, encode/decode
    records         CritiqueResult: the critique result, one constructor for the worker, the store and the client
    lines           the `lines` output format of `ase-client critique` (token lines included), rating_from_score
    saliency_frame  the saliency map's PNG frame (encode/decode)

Standard library only (the saliency codec imports Pillow and numpy inside its functions), so any client can use
it without the model or ZeroMQ. docs/protocol.md documents it; `ase_daemon.protocol` is an older name for it.
Server side (server, worker, store, watcher) and client side (client, client_cli) both import from here and never
from each other, except the server's startup check, which pings with the client.
"""

from .lines import *  # noqa: F403
from .lines import __all__ as _lines
from .records import *  # noqa: F403
from .records import __all__ as _records
from .saliency_frame import *  # noqa: F403
from .saliency_frame import __all__ as _saliency
from .wire import *  # noqa: F403
from .wire import __all__ as _wire

__all__ = [*_wire, *_records, *_lines, *_saliency]
