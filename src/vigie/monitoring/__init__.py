"""vigie.monitoring."""
