"""``python -m jetace`` is the ``jetace`` command."""

from jetace.cli import main

raise SystemExit(main())
