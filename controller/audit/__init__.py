"""The audit log: one JSON line per decision, the controller's record of what it did."""
