"""Event streams on a real Redis: consumer groups, claims after a crash, a restart."""
