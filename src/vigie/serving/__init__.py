"""vigie.serving."""
