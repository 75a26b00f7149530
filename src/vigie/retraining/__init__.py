"""vigie.retraining."""
