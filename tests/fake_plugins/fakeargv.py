"""A plugin that parses the command line at import, as a script would (argparse exits 2)."""
import argparse

parser = argparse.ArgumentParser(prog="fakeargv")
parser.add_argument("--fakeargv-required", required=True)
parser.parse_args()
