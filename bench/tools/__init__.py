# SPDX-License-Identifier: GPL-2.0-or-later
"""Programs the benchmark runs inside its namespaces (as scripts)."""
