"""``python -m asyncmailer``: the ``asyncmailer`` command line (see :mod:`asyncmailer.cli`)."""

import sys

from asyncmailer.cli import main

sys.exit(main())
