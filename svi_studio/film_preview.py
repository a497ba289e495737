"""The film preview, assembled from per-take segments instead of re-encoded as a whole.

Each selected take's kept frames [start, end) (`Director.film_segments`, cut by
`stitching.kept_range`) are encoded ONCE as a small preview-quality raw H.264 stream
(Annex B, `.h264`) in <project>/previews/segments/, named by everything that decides its bytes:

    <take id>.<start>-<end>.<fps>fps.<width>x<height>.<encoder tag>.h264

Takes never change once written, so a segment file stays valid for as long as its take
exists. A preview update then encodes only the segments that are new (a clip that just
landed, a take just selected) and hands all of them to ONE ffmpeg run as one input, read
back to back by its concat protocol (`-f h264 -i concat:a.h264|b.h264|…`), which wraps the
packets in mp4 by stream copy (`-c copy`): no frame that did not change is decoded or
encoded again, and no file is opened as a container of its own (the concat demuxer over
mp4 segments cost about 2 ms per segment more), so what an update costs beyond one ffmpeg
start is a few microseconds per frame.

Byte-joining raw H.264 is valid because every segment is written here with one encoder
setting (`SEGMENT_OUTPUT`: libx264, yuv420p, High profile, no B-frames) at one size and
fps, and opens with an IDR frame carrying its own SPS/PPS; `-framerate` gives the joined
stream its constant frame timing. The assembled file's frame count is checked against the
stitched count (packets counted without decoding) before it replaces the previous preview.

    preview = FilmPreview(project_root)
    preview.write(segments, frames_of, project_root / "preview.mp4", keep_takes=take_ids)
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

import imageio_ffmpeg
import numpy as np
from PIL import Image

from .fsutil import atomic_output, remove_stale_temps
from .project.model import ProjectError

if TYPE_CHECKING:
    from .director import FilmSegment

SEGMENTS_DIR = Path("previews") / "segments"
_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]+")
PREVIEW_CRF = "23"  # the same quality the old whole-film preview used (export.QUALITY["preview"])
#: Encoder settings shared by every segment. -bf 0: no B-frames, so decode order is display
#: order and the joined stream needs no reordering at the joins; -g: one keyframe per second or
#: so, and every segment opens with one (each file starts its own GOP). -f h264: raw Annex B.
#: Changing anything here changes ENCODER_TAG, so segments written with older settings are
#: never mixed with new ones.
SEGMENT_OUTPUT = ["-preset", "veryfast", "-crf", PREVIEW_CRF, "-profile:v", "high", "-bf", "0",
                  "-g", "32", "-f", "h264"]
SEGMENT_SUFFIX = ".h264"
ENCODER_TAG = hashlib.sha256(" ".join(SEGMENT_OUTPUT).encode()).hexdigest()[:8]

FramesOf = Callable[["FilmSegment"], Iterator[np.ndarray]]  # a segment → its kept frames [start, end), uint8 (H, W, 3) each, streamed


class PreviewError(ProjectError):
    """The preview could not be assembled (the previous preview file is left as it was)."""


def segment_name(take_id: str, start: int, end: int, fps: int, width: int, height: int) -> str:
    """The cache file name of one take's kept range at one fps and size (see the module docstring)."""
    return f"{take_id}.{start}-{end}.{fps}fps.{width}x{height}.{ENCODER_TAG}{SEGMENT_SUFFIX}"


def count_frames(path: str | Path) -> int:
    """Video frames in `path`, counted from its packets by stream copy (exact, no decoding)."""
    return _copy_video(["-i", str(path)], "-", "null", f"{Path(path).name} could not be read back")


def _copy_video(inputs: list[str], out: str, container: str, failure: str, output: list[str] = (),
                cwd: Path | None = None) -> int:
    """Run ffmpeg (in `cwd`) stream-copying the first video stream of `inputs` to `out` with the
    extra `output` options; return the number of frames it wrote (ffmpeg's final progress line).
    PreviewError with `failure` if ffmpeg fails."""
    result = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-nostdin", "-y", "-loglevel", "error", "-stats",
         *inputs, "-map", "0:v:0", "-c", "copy", *output, "-f", container, out],
        capture_output=True, text=True, cwd=cwd,
    )
    found = re.findall(r"frame=\s*(\d+)", result.stderr)
    if result.returncode != 0 or not found:
        raise PreviewError(f"{failure} ({_last_line(result.stderr)}).")
    return int(found[-1])


class FilmPreview:
    """The segment cache of one project folder and the preview assembled from it.

    prepared: segment file names encoded by this object (tests and benches count them).
    """

    def __init__(self, project_root: str | Path):
        self.root = Path(project_root)
        self.folder = self.root / SEGMENTS_DIR
        self.prepared: list[str] = []

    # -- segments ---------------------------------------------------------------------------

    def segment_path(self, segment: "FilmSegment", width: int, height: int) -> Path:
        return self.folder / segment_name(segment.take.id, segment.start, segment.end, int(segment.take.fps),
                                          width, height)

    def prepare(self, segment: "FilmSegment", frames_of: FramesOf, width: int, height: int) -> Path:
        """The segment file of `segment` at width×height, encoded now only if it is not cached yet."""
        path = self.segment_path(segment, width, height)
        if path.is_file():
            return path
        wanted = segment.end - segment.start
        with atomic_output(path, ".tmp" + SEGMENT_SUFFIX) as tmp:
            # imageio-ffmpeg directly (not moviepy): it writes exactly the frames it is sent.
            writer = imageio_ffmpeg.write_frames(
                str(tmp), (width, height), fps=int(segment.take.fps), codec="libx264", pix_fmt_in="rgb24",
                pix_fmt_out="yuv420p", quality=None, macro_block_size=1, ffmpeg_log_level="error",
                output_params=SEGMENT_OUTPUT,
            )
            writer.send(None)
            sent = 0
            try:
                for frame in frames_of(segment):  # one frame in memory at a time
                    if sent == wanted:
                        break
                    if frame.shape[:2] != (height, width):
                        frame = np.asarray(Image.fromarray(frame).resize((width, height), Image.Resampling.LANCZOS))
                    writer.send(np.ascontiguousarray(frame))
                    sent += 1
            finally:
                writer.close()
            if sent != wanted:  # the atomic output is dropped: no short segment is ever cached
                raise PreviewError(f"shot {segment.shot_index + 1}'s take has {segment.start + sent} frames, "
                                   f"fewer than its kept range needs ({segment.end}); render the shot again.")
        self.prepared.append(path.name)
        return path

    def clean(self, keep_takes: Iterable[str]) -> list[Path]:
        """Remove segment files whose take is not in `keep_takes` (deleted takes and shots, and
        segments written with other encoder settings); sweep temporaries left by a killed write."""
        keep = set(keep_takes)
        if not self.folder.is_dir():
            return []
        removed = [*remove_stale_temps(self.folder, ".*.tmp.mp4"), *remove_stale_temps(self.folder, ".*.tmp.h264"),
                   *remove_stale_temps(self.folder, ".concat-*")]
        for path in sorted([*self.folder.glob("*.mp4"), *self.folder.glob("*" + SEGMENT_SUFFIX)]):
            take_id = path.name.split(".", 1)[0]
            if take_id not in keep or not path.name.endswith(f".{ENCODER_TAG}{SEGMENT_SUFFIX}"):
                path.unlink(missing_ok=True)
                removed.append(path)
        return removed

    # -- the film ----------------------------------------------------------------------------

    def write(self, segments: list["FilmSegment"], frames_of: FramesOf, out_path: str | Path,
              keep_takes: Iterable[str] | None = None) -> Path:
        """Write the stitched film of `segments` to `out_path` (atomic) from cached segments.

        1. Encode the segments not cached yet (at the first take's size, even, and fps).
        2. Join all segments by stream copy (one raw H.264 input through the concat protocol).
        3. Check the joined file holds exactly the stitched frame count, then rename it into place.
        4. With `keep_takes` (every take id the project still lists), drop unreferenced segments.
        """
        if not segments:
            raise PreviewError("nothing to preview: no shot has a take yet.")
        first = segments[0].take
        fps = int(first.fps)
        if any(int(segment.take.fps) != fps for segment in segments):
            raise PreviewError("the selected takes were rendered at different fps; re-render the odd ones out.")
        width, height = _even(first.width), _even(first.height)

        # 1. Segments.
        paths = [self.prepare(segment, frames_of, width, height) for segment in segments]

        # 2. Stream-copy concatenation; 3. the joined film must hold exactly the stitched frames.
        expected = sum(segment.end - segment.start for segment in segments)
        out_path = Path(out_path)
        out_path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(out_path.parent, f".{out_path.stem}.*.tmp.mp4")
        with atomic_output(out_path, ".tmp.mp4") as tmp:
            try:
                got = self._join(paths, fps, tmp)
            except PreviewError:
                got = None
            if got != expected:  # a damaged cache file: encode the damaged segments again, once
                for segment, path in zip(segments, paths):
                    if _frames_or_none(path) != segment.end - segment.start:
                        path.unlink(missing_ok=True)
                        self.prepare(segment, frames_of, width, height)
                got = self._join(paths, fps, tmp)
            if got != expected:
                raise PreviewError(f"the joined preview has {got} frames, the stitched film {expected}.")

        # 4. Segments of takes that no longer exist.
        if keep_takes is not None:
            self.clean(keep_takes)
        return out_path

    def _join(self, paths: list[Path], fps: int, out: Path) -> int:
        """Read the segment files back to back as one raw H.264 stream at `fps` and wrap it in
        the mp4 `out` by stream copy; the frame count written. ffmpeg runs in the segments
        folder and is given bare file names (segment_name: letters, digits, '.', '-', '_'),
        so no path needs quoting in the concat URL."""
        names = [path.name for path in paths]
        if any(path.parent != self.folder or not _SAFE_NAME.fullmatch(name) for path, name in zip(paths, names)):
            raise PreviewError("a preview segment has an unexpected name; delete previews/segments and try again.")
        return _copy_video(["-framerate", str(fps), "-f", "h264", "-i", "concat:" + "|".join(names)],
                           str(Path(out).resolve()), "mp4", "the film preview could not be joined",
                           output=["-video_track_timescale", str(fps * 1000), "-movflags", "+faststart"],
                           cwd=self.folder)


def _frames_or_none(path: Path) -> int | None:
    try:
        return count_frames(path)
    except PreviewError:
        return None


def _even(value: int) -> int:
    return max(2, int(value) - int(value) % 2)


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "no message"
