"""What the bot says on its own: the ledger event reader, notices, announcements, and the one
sender that drains the outbox at the platform's limits (DESIGN.md "The bot's shape")."""
