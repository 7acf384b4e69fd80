"""``python -m asyncflow``: the ``asyncflow`` command."""

from asyncflow.cli import main

raise SystemExit(main())
