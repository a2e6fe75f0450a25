"""`python -m search`: see search/cli.py."""

import sys

from search.cli import main

sys.exit(main(sys.argv[1:]))
