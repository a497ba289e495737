"""Uploaded files are untrusted: check them and say plainly what is wrong.

Gradio hands handlers the path of an upload in its own upload folder; these helpers
check it and raise `UploadError` (a ProjectError, so the page shows the message) for
anything that is not what it claims to be. Reference images go to the Director, which
opens them with the project's one loader (`reference.load_reference`).
"""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

from ..project.model import ProjectError

AUDIO_SUFFIXES = {".wav", ".mp3", ".m4a", ".aac", ".ogg", ".flac"}


class UploadError(ProjectError):
    """An uploaded file that cannot be used; the message says why."""


def upload_name(path: str | Path | None) -> str:
    return Path(str(path)).name if path else "the file"


def keep_audio(path: str | Path | None, folder: Path) -> Path | None:
    """Copy an uploaded soundtrack into the session's uploads folder (export reads it later)."""
    if not path:
        return None
    source = Path(path)
    if source.suffix.lower() not in AUDIO_SUFFIXES:
        raise UploadError(f"{source.name}: use a {', '.join(sorted(AUDIO_SUFFIXES))} file for the soundtrack.")
    target = folder / f"soundtrack{source.suffix.lower()}"
    shutil.copyfile(source, target)
    return target


def keep_lora(path: str | Path | None, folder: Path, adapter: str) -> Path:
    """Copy an uploaded LoRA (.safetensors only: never a pickle) to uploads/<adapter>/<its own name>,
    so messages about it name the file the user chose."""
    if not path:
        raise UploadError("no LoRA file was uploaded.")
    source = Path(path)
    if source.suffix.lower() != ".safetensors":
        raise UploadError(f"{source.name}: LoRAs must be .safetensors files (pickled .ckpt/.pt/.bin files are refused).")
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", source.name).lstrip(".") or "lora.safetensors"
    target = folder / adapter / name
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)
    return target


def unpacked_size(path: str | Path) -> int:
    """The bytes a zip declares its entries hold once unpacked (the bundle module checks that
    the entries keep to it)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return sum(max(0, info.file_size) for info in archive.infolist())
    except (OSError, zipfile.BadZipFile, ValueError):
        raise UploadError(f"{upload_name(path)} is not a project zip (download one with 'Download project').") from None


def check_zip(path: str | Path | None) -> Path:
    """An uploaded project bundle: must at least be a zip (the bundle module checks the rest)."""
    if not path:
        raise UploadError("no project file was uploaded.")
    source = Path(path)
    if not zipfile.is_zipfile(source):
        raise UploadError(f"{source.name} is not a project zip (download one with 'Download project').")
    return source
