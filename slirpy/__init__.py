# SPDX-License-Identifier: GPL-2.0-or-later
"""slirpy: user-mode networking for unprivileged network namespaces."""

__version__ = "0.1.0"
