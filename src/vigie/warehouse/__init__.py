"""vigie.warehouse."""
