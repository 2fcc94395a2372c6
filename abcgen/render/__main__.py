"""``python -m abcgen.render FILES --to ...``: ``abcgen render`` without the rest of the command line."""

from __future__ import annotations

import argparse
import logging
import sys

import abcgen.render
from abcgen.errors import AbcgenError
from abcgen.render.command import add_render_arguments

logger = logging.getLogger("abcgen.render")


def main() -> int:
    """Parse the arguments, render, and turn an abcgen error into one logged line and exit status 2."""
    parser = argparse.ArgumentParser(prog="python -m abcgen.render", description=abcgen.render.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_render_arguments(parser)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr)
    try:
        return args.func(args)
    except AbcgenError as exc:
        logger.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
