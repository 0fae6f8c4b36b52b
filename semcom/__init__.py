"""semcom command line."""
