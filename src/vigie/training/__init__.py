"""vigie.training."""
