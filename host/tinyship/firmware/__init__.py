"""Firmware stage: build the PlatformIO firmware around a registry version (flashing and
rollback will live here too)."""
