"""Telegram through python-telegram-bot: updates in as neutral events, neutral replies out."""
