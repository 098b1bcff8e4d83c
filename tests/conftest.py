# SPDX-License-Identifier: GPL-2.0-or-later
"""Settings shared by the whole suite: hypothesis without per-example deadlines
(the end-to-end tests load the machine), and derandomised under CI so that a
run is reproducible."""

from __future__ import annotations

import os

from hypothesis import settings

settings.register_profile("slirpy", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "slirpy")
