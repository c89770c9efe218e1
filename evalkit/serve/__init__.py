"""Serving a policy over openpi's websocket wire format."""
