# SPDX-License-Identifier: GPL-2.0-or-later
"""Tests of the wire formats: parse and emit against golden bytes and scapy."""
