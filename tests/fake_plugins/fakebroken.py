"""A plugin that cannot be imported (as if a dependency were missing)."""
raise ImportError("No module named 'torchy'")
