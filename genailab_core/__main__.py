"""``python -m genailab_core ...``: see :mod:`genailab_core.experiments`."""
import sys

from .experiments import main

sys.exit(main())
