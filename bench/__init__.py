# SPDX-License-Identifier: GPL-2.0-or-later
"""The benchmark: slirpy beside slirp4netns, pasta and a kernel veth pair.

Run ``python -m bench`` (see ``bench/README.md``).
"""
