"""semcom edge agent."""
