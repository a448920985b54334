"""`python -m bench.detection`: see bench/detection/__init__.py."""

import sys

from bench.detection.cli import main

sys.exit(main())
