"""vigie.registry."""
