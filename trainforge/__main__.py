"""``python -m trainforge``: the same command as the console script (``trainforge.entry``)."""

import sys

from trainforge.entry import main

sys.exit(main())
