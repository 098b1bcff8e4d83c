# SPDX-License-Identifier: GPL-2.0-or-later
"""``python -m bench``: run the benchmark."""

import sys

from bench.run import main

sys.exit(main())
