"""Chat platforms as adapters: each turns its platform's updates into ``bot.chat.events`` and
renders ``bot.chat.replies`` within its declared ``Capabilities`` (DESIGN.md "Layout")."""
