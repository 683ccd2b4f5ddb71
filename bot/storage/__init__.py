"""The bot's own database: chats, the outbox, broadcasts, pending conversations, cursors."""
