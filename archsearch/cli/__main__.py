"""``python -m archsearch.cli``: the ``archsearch`` command."""

import sys

from archsearch.cli.commands import main

sys.exit(main())
