"""semcom wire contract."""
