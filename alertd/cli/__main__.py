"""`python -m alertd.cli`: the `alertd` command without its installed script."""

import sys

from alertd.cli.main import main

sys.exit(main())
