"""`python -m rlaif ...`: the command line lives in rlaif/cli/main.py."""

import sys

from rlaif.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
