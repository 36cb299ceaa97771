"""`python -m socialcard ...` runs the `socialcard` command, for when the script is not on PATH."""

import sys

from app.cli import main

sys.exit(main())
