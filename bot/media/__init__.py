"""Pictures the bot sends: pure functions from data to PNG bytes (no chat, no ledger)."""
