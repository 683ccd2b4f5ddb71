"""The terminal as a channel: typed or piped lines in as neutral events, replies printed."""
