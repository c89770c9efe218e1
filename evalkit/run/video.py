"""Opt-in episode videos: mp4 of the agent view, named so that no two episodes collide."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from evalkit.core.types import EpisodeResult

VIDEO_FPS = 20  # LIBERO's control frequency


def video_name(result: EpisodeResult) -> str:
    task = re.sub(r"[^A-Za-z0-9_.-]+", "_", result.task_name)[:80]
    outcome = "success" if result.success else result.termination
    return f"{result.suite}__task{result.task_id:02d}_{task}__init{result.init_index:02d}__seed{result.seed}__{outcome}.mp4"


def save_episode_video(video_dir: str, result: EpisodeResult, frames: list[np.ndarray]) -> str:
    """Write the frames as an mp4 and return its path."""
    import imageio.v2 as imageio  # optional dependency (extra "video")

    path = Path(video_dir) / video_name(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    with imageio.get_writer(path, fps=VIDEO_FPS, codec="libx264", macro_block_size=1) as writer:
        for frame in frames:
            writer.append_data(np.ascontiguousarray(frame))
    return str(path)
