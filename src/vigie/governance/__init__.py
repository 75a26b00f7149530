"""vigie.governance."""
