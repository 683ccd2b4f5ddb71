"""The one way anything talks to the ledger: typed calls, typed answers, typed errors.

Two transports share one interface: HTTP to a ledger service, or in-process on a database URL
(the embedded default). ``connect`` picks by URL.
"""

from ledger_client.base import LedgerClient
from ledger_client.connect import connect

__all__ = ["LedgerClient", "connect"]
