"""semcom cloud service."""
