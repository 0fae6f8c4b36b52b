"""semcom network simulation."""
