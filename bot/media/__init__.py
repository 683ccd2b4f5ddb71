"""Pictures: drawing redemption QR codes, pool charts and circle maps (pure functions from data
to PNG bytes), and reading codes from photos."""
