"""``python -m tlbrace``: the same as the ``tlbrace`` command."""

import sys

from tlbrace import main

sys.exit(main())
