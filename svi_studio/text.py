"""User text as it is stored and as a clip reads it."""

from __future__ import annotations

from typing import Any

from .project.model import MAX_TEXT_CHARS, ProjectError

LONG_PROMPT_CHARS = 2_000  # about the 512 tokens Wan's text encoder reads


def full_prompt(shot_prompt: str, style_prompt: str) -> str:
    """The prompt a clip is rendered with: the shot's own text, then the shared style/character text."""
    shot_prompt, style_prompt = shot_prompt.strip(), style_prompt.strip()
    if not style_prompt:
        return shot_prompt
    if not shot_prompt:
        return style_prompt
    joiner = " " if shot_prompt[-1] in ".!?。" else ". "
    return f"{shot_prompt}{joiner}{style_prompt}"


def clean_text(value: Any, what: str, notices: list[str] | None = None) -> str:
    """User text as it will be stored: kept literally (never parsed or evaluated), except
    lone UTF-16 surrogates (they cannot be written as UTF-8, so one would make every later
    save of the project fail), which become U+FFFD. Adds notices to `notices`; raises
    ProjectError for text over MAX_TEXT_CHARS."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_TEXT_CHARS:
        raise ProjectError(f"{what} is {len(text):,} characters long; the limit is {MAX_TEXT_CHARS:,}. Shorten it.")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # Through UTF-16: a high+low pair becomes its real character, a lone half becomes U+FFFD.
        text = text.encode("utf-16-le", errors="surrogatepass").decode("utf-16-le", errors="replace")
        if notices is not None:
            notices.append(f"{what} held characters that are not valid text (lone surrogates); "
                           "they were replaced with \ufffd.")
    if notices is not None and len(text) > LONG_PROMPT_CHARS and "prompt" in what:
        notices.append(f"{what} is {len(text):,} characters; the model reads only about the first "
                       f"{LONG_PROMPT_CHARS:,} (512 tokens). The rest is kept but has no effect.")
    return text
