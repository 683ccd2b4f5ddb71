"""Chat platforms the bot serves, each an adapter around the channel-neutral core."""
