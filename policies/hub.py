"""Checkpoint files from a local folder or a Hugging Face hub id, with errors that name the file.

Every model adapter loads through here so that "which file is missing, and where was it
looked for" reads the same everywhere, and an offline machine says so instead of
raising a connection traceback from deep inside huggingface_hub.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional


class CheckpointError(FileNotFoundError):
    """A checkpoint file that could not be found locally or fetched from the hub."""


def is_local(path_or_id: str | Path) -> bool:
    return Path(path_or_id).expanduser().is_dir()


def checkpoint_file(path_or_id: str | Path, filename: str, required: bool = True) -> Optional[Path]:
    """Path of `filename` in a checkpoint folder, or downloaded from the hub repo of that id.

    Returns None when the file does not exist and `required` is False.
    """
    if is_local(path_or_id):
        path = Path(path_or_id).expanduser() / filename
        if path.exists():
            return path
        if required:
            raise CheckpointError(f"checkpoint folder {path_or_id} has no {filename}")
        return None
    if Path(path_or_id).expanduser().exists() or looks_like_path(path_or_id):
        raise CheckpointError(f"checkpoint {path_or_id} is not a folder (expected a local checkpoint folder "
                              f"or a hub id like 'declare-lab/nora')")
    return _hub_file(str(path_or_id), filename, required)


def _hub_file(repo_id: str, filename: str, required: bool) -> Optional[Path]:
    try:
        from huggingface_hub import hf_hub_download
        from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError
    except ImportError as exc:
        raise CheckpointError(f"{repo_id!r} is not a local folder and huggingface_hub is not installed "
                              f"(pip install huggingface_hub), so {filename} cannot be fetched") from exc
    try:
        return Path(hf_hub_download(repo_id, filename))
    except LocalEntryNotFoundError as exc:  # before EntryNotFoundError: a subclass of it
        raise CheckpointError(
            f"cannot fetch {filename} of {repo_id}: the machine looks offline and the file is not in the local "
            f"hub cache. Download the checkpoint elsewhere (huggingface-cli download {repo_id}) and pass its "
            f"folder instead") from exc
    except EntryNotFoundError:
        if required:
            raise CheckpointError(f"hub repo {repo_id} has no file {filename}") from None
        return None
    except Exception as exc:  # repository not found, gated, HTTP errors: keep the cause, name the file
        raise CheckpointError(f"cannot fetch {filename} of hub repo {repo_id}: {type(exc).__name__}: {exc}") from exc


def looks_like_path(path_or_id: str | Path) -> bool:
    """A string the user meant as a local path (hub ids never start like this)."""
    return str(path_or_id).startswith(("/", ".", "~"))


def default_device(device: Optional[str] = None) -> str:
    """The given device, else cuda when available, else cpu."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_dtype(name: str):
    """'float32' | 'bfloat16' | 'float16' | 'auto' -> a torch dtype (auto: bfloat16 on GPU, float32 on CPU)."""
    import torch

    choices = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_available() else torch.float32
    if name not in choices:
        raise ValueError(f"unknown dtype {name!r}; use one of auto, {', '.join(choices)}")
    return choices[name]
