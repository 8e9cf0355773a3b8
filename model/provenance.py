"""Paths as a checkpoint's provenance records them: never an absolute path of the training machine.

A shipped checkpoint travels to other machines, where the trainer's home directory and working
folder mean nothing and may say more than they should. A path under the working folder is kept
relative to it; any other absolute path keeps only its file name.
"""

from __future__ import annotations

import os
from pathlib import Path


def portable_path(path: str | Path) -> str:
    """`path` relative to the working folder when inside it, else its name alone."""
    candidate = Path(path).expanduser()
    if not candidate.is_absolute():
        return str(candidate)
    try:
        return str(candidate.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return candidate.name


def portable_words(words: list[str]) -> list[str]:
    """A command line with every absolute path word made portable (see `portable_path`)."""
    return [portable_path(word) if os.path.isabs(os.path.expanduser(word)) else word for word in words]
