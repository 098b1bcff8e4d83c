# SPDX-License-Identifier: GPL-2.0-or-later
"""Scenario tests of the sans-IO stack: frames in, frames and events out."""
