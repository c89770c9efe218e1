"""Opt-in episode videos: which episodes keep one, what each frame shows, and the mp4 itself.

`--video all|failures|successes|N` (YAML `video:`; true means all). Every episode that may keep a
video records its frames; once its outcome is known the worker saves them (`VideoPlan.keeps`) or
drops them. N keeps the first N init states of each task (by init index, over the whole run), so the
same episodes keep their video with any worker count, shard or resume, and the others record nothing.

Each frame is the agent view, or the policy's cameras side by side when it reads several, with a
banner under it: suite, task and init state, the step, the success flag so far and the gripper
command executed at that step (after the suite's action conventions). Small frames (the fake suite's
16x16) are scaled up by whole pixels. Files are H.264 mp4 (Debian's Chromium plays them: tests/test_view.py).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from evalkit.core.types import EpisodeResult

VIDEO_FPS = 20  # LIBERO's control frequency
MIN_WIDTH = 256  # narrower frames are scaled up (nearest neighbour, a whole factor)
BANNER_BG, TEXT, GOOD, BAD = (24, 24, 24), (235, 235, 235), (80, 220, 110), (255, 120, 100)


@dataclass(frozen=True)
class VideoPlan:
    """Which episodes record frames and which keep their video."""

    keep: str  # "all", "failures", "successes", or "first": the episodes named in `keys`
    keys: frozenset = frozenset()

    def records(self, episode) -> bool:
        return self.keep != "first" or episode.key in self.keys

    def keeps(self, result: EpisodeResult) -> bool:
        if self.keep == "failures":
            return not result.success
        if self.keep == "successes":
            return bool(result.success)
        return self.keep == "all" or result.key in self.keys


def plan_videos(setting, episodes: Sequence) -> Optional[VideoPlan]:
    """The plan for a (normalised) `video` setting over all the run's episodes; None: no videos."""
    if not setting:
        return None
    if isinstance(setting, int):
        by_task: dict = {}
        for ep in sorted(episodes, key=lambda e: (e.suite, e.task_id, e.init_index, e.seed)):
            by_task.setdefault((ep.suite, ep.task_id), []).append(ep.key)
        return VideoPlan("first", frozenset(key for keys in by_task.values() for key in keys[:setting]))
    return VideoPlan(setting)


@dataclass
class VideoFrame:
    image: np.ndarray  # upright RGB
    step: Optional[int] = None  # env steps after the wait steps (0: the settled scene before the first action)
    success: bool = False  # the success flag after this step
    gripper: Optional[float] = None  # the gripper command executed at this step (None before the first)


def capture_frame(env, cameras: Sequence[str], step: int, success: bool, gripper=None) -> VideoFrame:
    """The env's agent-view frame; where the policy reads several cameras, those side by side (with video
    on, the env renders the policy's cameras on every step, so this renders nothing more)."""
    image = env.frame()
    if len(cameras) > 1:
        images = env.observation().images
        views = [images[camera] for camera in cameras if camera in images]
        if len(views) > 1:
            image = side_by_side(views)
    return VideoFrame(np.asarray(image), step, bool(success), None if gripper is None else float(gripper))


def side_by_side(images: Sequence[np.ndarray], gap: int = 2) -> np.ndarray:
    height = max(image.shape[0] for image in images)
    parts = []
    for image in images:
        padded = np.zeros((height, image.shape[1], 3), np.uint8)
        padded[:image.shape[0]] = image[..., :3]
        parts += [padded, np.full((height, gap, 3), 96, np.uint8)]
    return np.concatenate(parts[:-1], axis=1)


def video_name(result: EpisodeResult) -> str:
    task = re.sub(r"[^A-Za-z0-9_.-]+", "_", result.task_name)[:80]
    outcome = "success" if result.success else result.termination
    return f"{result.suite}__task{result.task_id:02d}_{task}__init{result.init_index:02d}__seed{result.seed}__{outcome}.mp4"


def save_episode_video(video_dir: str, result: EpisodeResult, frames: list) -> str:
    """Write the frames (VideoFrame, or bare images) with their banner as an mp4; returns its path."""
    import imageio.v2 as imageio  # optional dependency (extra "video")

    path = Path(video_dir) / video_name(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(path, fps=VIDEO_FPS, codec="libx264", macro_block_size=1,
                            output_params=["-movflags", "+faststart"]) as writer:  # playable while loading
        for frame in frames:
            frame = frame if isinstance(frame, VideoFrame) else VideoFrame(np.asarray(frame))
            writer.append_data(annotate(frame, result))
    return str(path)


def annotate(frame: VideoFrame, result: EpisodeResult) -> np.ndarray:
    """The frame, scaled up if small, above a banner: task, init state, step, success flag, gripper."""
    image = upscale(np.asarray(frame.image)[..., :3].astype(np.uint8))
    title = f"{result.suite} task {result.task_id}: {result.task_name.replace('_', ' ')}"
    step = "-" if frame.step is None else f"{frame.step}/{result.steps}"
    gripper = "-" if frame.gripper is None else f"{frame.gripper:+.2f}"
    flag = (" SUCCESS ", BANNER_BG, GOOD) if frame.success else ("success no", TEXT, None)  # a green badge once true
    status = [(f"init {result.init_index}   step {step}   ", TEXT, None), flag, (f"   gripper {gripper}", TEXT, None)]
    return _even(np.concatenate([image, _banner(image.shape[1], title, status)], axis=0))


def upscale(image: np.ndarray) -> np.ndarray:
    factor = -(-MIN_WIDTH // image.shape[1]) if image.shape[1] < MIN_WIDTH else 1
    return image.repeat(factor, axis=0).repeat(factor, axis=1) if factor > 1 else image


def _banner(width: int, title: str, status: list) -> np.ndarray:
    from PIL import Image, ImageDraw

    font = _font(11 if width < 400 else 13)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    lines = _wrap(title, font, probe, width - 8)[:2]
    line_h = font.size + 4 if hasattr(font, "size") else 14
    banner = Image.new("RGB", (width, line_h * (len(lines) + 1) + 6), BANNER_BG)
    draw = ImageDraw.Draw(banner)
    for row, line in enumerate(lines):
        draw.text((4, 3 + row * line_h), line, fill=TEXT, font=font)
    x = 4
    y = 3 + len(lines) * line_h
    for text, colour, background in status:
        length = int(draw.textlength(text, font=font))
        if background:
            draw.rectangle((x, y - 1, x + length, y + line_h - 2), fill=background)
        draw.text((x, y), text, fill=colour, font=font)
        x += length
    return np.asarray(banner)


@functools.lru_cache(maxsize=4)
def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)  # Pillow >= 10.1: a scalable built-in font
    except TypeError:
        return ImageFont.load_default()  # older Pillow: the fixed bitmap font


def _wrap(text: str, font, draw, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split(" "):
        candidate = f"{line} {word}".strip()
        if line and draw.textlength(candidate, font=font) > width:
            lines.append(line)
            candidate = word
        line = candidate
    lines.append(line)
    if len(lines) > 2:  # keep two lines; the file name holds the full task name
        lines = [lines[0], " ".join(lines[1:])]
        while len(lines[1]) > 3 and draw.textlength(lines[1] + "...", font=font) > width:
            lines[1] = lines[1][:-1]
        lines[1] += "..."
    return lines


def _even(image: np.ndarray) -> np.ndarray:
    """H.264 (yuv420p) needs even sides: pad by a row or column where odd."""
    pad_h, pad_w = image.shape[0] % 2, image.shape[1] % 2
    return np.pad(image, ((0, pad_h), (0, pad_w), (0, 0))) if pad_h or pad_w else image
