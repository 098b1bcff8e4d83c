# SPDX-License-Identifier: GPL-2.0-or-later
"""Hostile frames: the catalogue of bad inputs and the coverage-guided fuzz target."""
