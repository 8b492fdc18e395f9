"""CSS classes on the widgets' elements, so a browser test (or a lecturer's stylesheet) can find them."""

from __future__ import annotations


def mark(widget, name: str):
    """Give ``widget`` the class ``mm-<name>`` on its element in the page; returns the widget."""
    widget.add_class(f"mm-{name}")
    return widget
