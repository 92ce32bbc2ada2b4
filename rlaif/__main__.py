"""`python -m rlaif ...`: the command line lives in rlaif/cli/ (main.py builds the parser and
dispatches to the command modules beside it)."""

import sys

from rlaif.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
