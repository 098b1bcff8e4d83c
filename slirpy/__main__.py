# SPDX-License-Identifier: GPL-2.0-or-later
"""``python -m slirpy``: the same entry point as the ``slirpy`` command."""

import sys

from slirpy.cli import main

sys.exit(main())
