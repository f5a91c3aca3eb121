"""``python -m latlab``: the ``latlab`` command."""

import sys

from latlab.cli import main

sys.exit(main())
