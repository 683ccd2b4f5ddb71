"""Pictures: drawing redemption QR codes and reading codes from photos."""
