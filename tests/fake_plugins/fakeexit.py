"""A plugin that prints to stdout and exits the interpreter at import."""
import sys

print("fakeexit: goodbye")  # must not reach a command's stdout (JSON output)
sys.exit(3)
