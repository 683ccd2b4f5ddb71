"""The channel-neutral conversation core (DESIGN.md "The conversation core").

Features in ``handlers/`` are written only in these terms: incoming events (``events``), replies
(``replies``), a channel's declared capabilities (``channel``), and the pure text tools that keep
every message within a channel's limit (``splitting``, ``paging``). Nothing here imports a chat
platform library; each platform is an adapter under ``bot/channels/``.
"""
