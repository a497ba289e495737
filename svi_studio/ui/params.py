"""API parameters as a client sends them: checked here, each refusal saying what was wrong.

Gradio hands the named endpoints' numbers and flags over as sent (see app.as_sent): a
hand-made client can send NaN, ±Infinity, None, text, fractions or numbers with thirty
digits. Settings go through settings.normalise_settings and seeds through
settings.validate_seed; these are the parameters that are not settings.
"""

from __future__ import annotations

import math
from typing import Any

from ..project.model import ProjectError
from ..settings import SettingsError


def shot_number(value: Any, shots: int) -> int:
    """A shot index (0-based) as an int, or ProjectError saying what was wrong."""
    problem = ProjectError(f"the shot index must be a whole number from 0 to {shots - 1}, got {str(value)[:40]!r}.")
    if isinstance(value, (bool, list, dict)) or value is None:
        raise problem
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise problem from None
    if not math.isfinite(number) or number != int(number):
        raise problem
    if not 0 <= number < shots:
        raise ProjectError(f"there is no shot {str(value)[:40]} (0-based); the film has {shots} shot"
                           f"{'s' if shots != 1 else ''}, 0 to {shots - 1}.")
    return int(number)


def true_or_false(value: Any, name: str) -> bool:
    """A flag: true/false, 1/0, "true"/"false" (None and "" are false), else ProjectError."""
    if isinstance(value, bool) or value is None:
        return bool(value)
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", ""):
        return value.strip().lower() in ("true", "1")
    raise ProjectError(f"{name} must be true or false, got {str(value)[:40]!r}.")


def crossfade_seconds(value: Any) -> float:
    """The export crossfade in seconds, 0 to 1 (None and "" are 0), else ProjectError."""
    if value in (None, ""):
        return 0.0
    problem = ProjectError(f"the crossfade must be a number of seconds from 0 to 1, got {str(value)[:40]!r}.")
    if isinstance(value, (bool, list, dict)):
        raise problem
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise problem from None
    if not math.isfinite(number) or not 0 <= number <= 1:
        raise problem
    return number


def whole_number(value: Any, name: str) -> int:
    """A whole number (a project revision, a move's offset), else ProjectError saying what was wrong."""
    problem = ProjectError(f"{name} must be a whole number, got {str(value)[:40]!r}.")
    if isinstance(value, (bool, list, dict)) or value in (None, ""):
        raise problem
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise problem from None
    if not math.isfinite(number) or number != int(number) or abs(number) > 2**53:
        raise problem
    return int(number)


def shot_id(value: Any) -> str:
    """A shot id as /status gives it (`shot_id`), else ProjectError."""
    if not isinstance(value, str) or not value.strip():
        raise ProjectError(f"name the shot by its id (`shot_id` in /status), got {str(value)[:40]!r}.")
    return value.strip()


def frames_for_seconds(seconds: Any, fps: Any) -> int:
    """The valid frame count (4k+1, at least 5) nearest to `seconds` at `fps`; SettingsError when
    either is not a positive number. The page shows the length this gives (num_frames / fps)."""
    try:
        length, rate = float(seconds), float(fps)
    except (TypeError, ValueError, OverflowError):
        raise SettingsError(f"the shot length must be a number of seconds, got {str(seconds)[:40]!r}.") from None
    if not (math.isfinite(length) and length > 0 and math.isfinite(rate) and rate > 0):
        raise SettingsError(f"the shot length must be more than 0 seconds, got {str(seconds)[:40]!r}.")
    return max(5, 4 * round(length * rate / 4) + 1)


def shot_seconds(num_frames: int, fps: int) -> float:
    """What the shot-length control shows for a frame count: seconds, to 2 decimals."""
    return round(num_frames / fps, 2)
