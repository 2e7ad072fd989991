"""Talking to a tinyship board: protocol codec, serial transport, request/reply client."""
