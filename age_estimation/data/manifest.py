"""Dataset manifests: one row per video (path, age, subject id, optional label and split).

A plain CSV and the UvA-NEMO Smile distribution both become a list of ``ManifestRow``. Readers
check every row and report all problems at once, with row numbers (``ManifestError``); the
``scan_*`` variants return the valid rows and the problems separately so ``prepare`` can reject
bad rows one by one and prepare the rest. No TensorFlow here (edge path).

Example:
    >>> scan = scan_csv_manifest("data/synthetic/manifest.csv")
    >>> scan.rows[0].path, scan.rows[0].age, scan.problems
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from age_estimation.atomic_files import write_bytes_atomic
from age_estimation.config import DataConfig

REQUIRED_COLUMNS = ("path", "age", "subject")
OPTIONAL_COLUMNS = ("label", "split")
AGE_RANGE = (0.0, 120.0)  # plausible human ages in years; outside is a data error
MANIFEST_NAME = "manifest.csv"
UVA_NEMO_DETAILS = "UvA-NEMO_Smile_Database_File_Details.txt"
UVA_NEMO_VIDEOS = "videos"
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")


class ManifestError(ValueError):
    """A manifest has problems; the message lists every one with its row number."""

    def __init__(self, source: str | Path, problems: list[ManifestProblem]) -> None:
        self.source = Path(source)
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(f"{source}: {len(problems)} problem(s) in the manifest:\n{lines}")


@dataclass
class ManifestRow:
    """One video of a dataset: its file, the subject's age in years, the subject id, label and split."""

    path: Path
    age: float
    subject: str
    label: str = ""
    split: str = ""


@dataclass
class ManifestProblem:
    """One problem of one row (row 0 for the manifest as a whole)."""

    row: int
    path: str
    reason: str

    def __str__(self) -> str:
        where = f"row {self.row}" if self.row else "manifest"
        return f"{where} ({self.path}): {self.reason}" if self.path else f"{where}: {self.reason}"


@dataclass
class ManifestScan:
    """Valid rows and the problems of the rest, from one manifest source."""

    source: Path
    rows: list[ManifestRow] = field(default_factory=list)
    problems: list[ManifestProblem] = field(default_factory=list)

    def strict(self) -> list[ManifestRow]:
        """The rows, or a ``ManifestError`` listing every problem."""
        if self.problems:
            raise ManifestError(self.source, self.problems)
        return self.rows


def row_problems(row: ManifestRow) -> list[str]:
    """What is wrong with one row on its own (missing file, bad age, empty subject); empty when fine."""
    problems = []
    path = Path(row.path)
    if not path.is_file():
        problems.append(f"video file not found: {path}")
    age = _as_age(row.age)
    if age is None:
        problems.append(f"age {row.age!r} is not a number")
    elif not AGE_RANGE[0] <= age <= AGE_RANGE[1]:
        problems.append(f"age {age:g} is outside {AGE_RANGE[0]:g}-{AGE_RANGE[1]:g} years")
    if not str(row.subject).strip():
        problems.append("empty subject id")
    return problems


def check_rows(rows: list[ManifestRow], numbers: list[int] | None = None) -> ManifestScan:
    """Split rows into valid ones and problems (per row, plus duplicate paths); numbers name the rows."""
    numbers = numbers or list(range(1, len(rows) + 1))
    scan = ManifestScan(source=Path("<rows>"))
    seen: dict[Path, int] = {}
    for number, row in zip(numbers, rows):
        reasons = row_problems(row)
        key = Path(os.path.abspath(row.path))
        if key in seen:
            reasons.append(f"duplicate path (also row {seen[key]})")
        seen.setdefault(key, number)
        if reasons:
            scan.problems.append(ManifestProblem(number, str(row.path), "; ".join(reasons)))
        else:
            scan.rows.append(ManifestRow(Path(row.path), float(row.age), str(row.subject).strip(), row.label, row.split))
    return scan


def scan_csv_manifest(path: str | Path) -> ManifestScan:
    """Read a CSV manifest (columns path, age, subject; optional label, split) leniently.

    Relative paths are relative to the CSV's folder. Row numbers count the header as row 1.
    A missing file or missing required column raises ``ManifestError`` at once.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(path, [ManifestProblem(0, "", "manifest file not found")])
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise ManifestError(path, [ManifestProblem(0, "", f"not a UTF-8 text file ({err})")]) from err
    reader = csv.DictReader(io.StringIO(text))
    columns = [c.strip() for c in reader.fieldnames or []]
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        reason = f"missing column(s) {', '.join(missing)}; found {', '.join(columns) or 'none'}"
        raise ManifestError(path, [ManifestProblem(0, "", reason)])
    rows, numbers = [], []
    for number, record in enumerate(reader, start=2):
        record = {(k or "").strip(): (v or "").strip() for k, v in record.items() if k is not None}
        if not any(record.values()):
            continue
        video = Path(record["path"])
        rows.append(
            ManifestRow(
                path=video if video.is_absolute() else path.parent / video,
                age=_age_or_text(record["age"]),
                subject=record["subject"],
                label=record.get("label", ""),
                split=record.get("split", ""),
            )
        )
        numbers.append(number)
    scan = check_rows(rows, numbers)
    scan.source = path
    return scan


def scan_uva_nemo(root: str | Path) -> ManifestScan:
    """Read the UvA-NEMO Smile distribution (details file + ``videos/``) leniently.

    Data lines are ``filename subject gender age [label]`` separated by whitespace; header, blank
    and comment lines are skipped. A missing label is taken from the file name
    (``deliberate``/``spontaneous``). Row numbers are line numbers of the details file.
    """
    root = Path(root)
    details = _find_details(root)
    videos = root / UVA_NEMO_VIDEOS
    if not videos.is_dir():
        raise ManifestError(root, [ManifestProblem(0, "", f"no {UVA_NEMO_VIDEOS}/ folder in {root}")])
    rows, numbers, problems = [], [], []
    for number, line in enumerate(details.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        tokens = line.split()
        if not tokens or not _looks_like_video_name(tokens[0]):
            continue
        if len(tokens) < 4:
            problems.append(ManifestProblem(number, tokens[0], f"expected filename, subject, gender, age; got {line!r}"))
            continue
        name, subject, _gender, age_text = tokens[:4]
        label = " ".join(tokens[4:]) or _label_from_name(name)
        rows.append(ManifestRow(_video_file(videos, name), _age_or_text(age_text), subject, label))
        numbers.append(number)
    if not rows and not problems:
        problems.append(ManifestProblem(0, str(details), "no data lines (filename subject gender age label)"))
    scan = check_rows(rows, numbers)
    scan.source = details
    scan.problems = sorted(problems + scan.problems, key=lambda p: p.row)
    return scan


def scan_manifest(cfg: DataConfig) -> ManifestScan:
    """The manifest named by a data config: ``uva_nemo`` reads the root, others ``manifest.csv``."""
    if cfg.source == "uva_nemo":
        return scan_uva_nemo(cfg.path)
    path = Path(cfg.path)
    return scan_csv_manifest(path if path.suffix.lower() == ".csv" else path / MANIFEST_NAME)


def write_csv_manifest(rows: list[ManifestRow], path: str | Path) -> None:
    """Atomically write rows as a CSV manifest, with paths relative to its folder where possible."""
    path = Path(path)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS])
    folder = path.parent.resolve()
    for row in rows:
        video = Path(row.path)
        try:
            shown = video.resolve().relative_to(folder).as_posix()
        except ValueError:
            shown = str(video.resolve())
        writer.writerow([shown, f"{float(row.age):g}", row.subject, row.label, row.split])
    write_bytes_atomic(path, buffer.getvalue().encode())


def _as_age(value: object) -> float | None:
    try:
        age = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return age if math.isfinite(age) else None


def _age_or_text(text: str) -> float:
    """The age as a float, or the raw text so that ``check_rows`` can name it in its reason."""
    age = _as_age(text)
    return age if age is not None else text  # type: ignore[return-value]


def _find_details(root: Path) -> Path:
    exact = root / UVA_NEMO_DETAILS
    if exact.is_file():
        return exact
    candidates = sorted(p for p in root.glob("*.txt") if "details" in p.name.lower())
    if not candidates:
        raise ManifestError(root, [ManifestProblem(0, "", f"details file {UVA_NEMO_DETAILS} not found in {root}")])
    return candidates[0]


def _looks_like_video_name(token: str) -> bool:
    return token.lower().endswith(VIDEO_SUFFIXES) or re.fullmatch(r"\d+_\w+_\d+", token) is not None


def _video_file(videos: Path, name: str) -> Path:
    if Path(name).suffix.lower() in VIDEO_SUFFIXES:
        return videos / name
    matches = sorted(videos.glob(f"{name}.*"))
    return matches[0] if matches else videos / f"{name}.mp4"


def _label_from_name(name: str) -> str:
    lowered = name.lower()
    return next((label for label in ("deliberate", "spontaneous") if label in lowered), "")
