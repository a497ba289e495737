"""The one base class of every error a user can fix.

A `UserError` carries a sentence for the user: what was wrong and what to do. It never
holds a traceback or an absolute server path. The CLI, the page and the render runtime
each catch `UserError` in exactly one place and show its message; anything else is a
bug and is logged. Subclasses live with the module that raises them (ProjectError in
project/model.py, SettingsError in settings.py, EngineError in engines/base.py, …).
"""

from __future__ import annotations

import re


class UserError(Exception):
    """An error whose message tells the user what to change (bad input, missing take, out of memory…)."""


def user_message(error: BaseException) -> str:
    """An exception as a sentence for the page or the terminal (first letter capitalised)."""
    text = str(error).strip() or error.__class__.__name__
    if re.match(r"[a-z]+\b(?![.\w])", text):  # a sentence, not a file name like "cat.png is …"
        text = text[0].upper() + text[1:]
    return text
