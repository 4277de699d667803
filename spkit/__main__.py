"""`python -m spkit ...` is the same as the `spkit` console script (used by torchrun)."""

from spkit.cli import main

raise SystemExit(main())
