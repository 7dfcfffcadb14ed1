"""A plugin that exits the interpreter at import."""
import sys

sys.exit(3)
