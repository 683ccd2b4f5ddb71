"""The Green Points chat application: wiring, outbox, storage, i18n, QR, console channel."""
