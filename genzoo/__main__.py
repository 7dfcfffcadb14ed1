"""``python -m genzoo``: the same as the ``genzoo`` command."""
from genzoo.cli import main

if __name__ == "__main__":
    main()
