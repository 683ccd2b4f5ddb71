"""The ledger's API: one table of operations, served over HTTP and invoked in-process."""
