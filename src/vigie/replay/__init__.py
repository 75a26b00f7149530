"""Replay: a warehouse window turned into live prediction traffic and delayed events."""
