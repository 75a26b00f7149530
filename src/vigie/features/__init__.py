"""Feature definitions shared by training (offline, point in time) and serving (online)."""
