"""``python -m suno_nb``."""

import sys

from .cli import main

sys.exit(main())
