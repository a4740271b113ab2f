"""Manifests: CSV and UvA-NEMO readers, validation that lists every problem, and the CSV writer."""

from __future__ import annotations

from pathlib import Path

import pytest

from age_estimation.config import DataConfig
from age_estimation.data.manifest import (
    ManifestError,
    ManifestRow,
    scan_csv_manifest,
    scan_manifest,
    scan_uva_nemo,
    write_csv_manifest,
)


def _touch(folder: Path, *names: str) -> None:
    for name in names:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x")


def test_csv_rows_resolve_paths_relative_to_the_csv(tmp_path: Path) -> None:
    _touch(tmp_path, "clips/a.mp4", "clips/b.mp4")
    (tmp_path / "m.csv").write_text(
        "path,age,subject,label,split\nclips/a.mp4,31.5,s1,posed,train\nclips/b.mp4, 8 ,s2,,\n"
    )
    rows = scan_csv_manifest(tmp_path / "m.csv").strict()
    assert rows == [
        ManifestRow(tmp_path / "clips/a.mp4", 31.5, "s1", "posed", "train"),
        ManifestRow(tmp_path / "clips/b.mp4", 8.0, "s2", "", ""),
    ]


def test_every_problem_is_listed_with_its_row_number(tmp_path: Path) -> None:
    _touch(tmp_path, "a.mp4", "b.mp4", "c.mp4")
    (tmp_path / "m.csv").write_text(
        "path,age,subject\n"
        "a.mp4,30,s1\n"  # row 2: fine
        "missing.mp4,30,s2\n"  # row 3
        "b.mp4,old,s3\n"  # row 4
        "c.mp4,130,s4\n"  # row 5
        "a.mp4,30,s1\n"  # row 6: duplicate of row 2
        "c.mp4,30,\n"  # row 7: duplicate of row 5 and no subject
    )
    with pytest.raises(ManifestError) as err:
        scan_csv_manifest(tmp_path / "m.csv").strict()
    message = str(err.value)
    assert "5 problem(s)" in message
    assert "row 3" in message and "video file not found" in message
    assert "row 4" in message and "age 'old' is not a number" in message
    assert "row 5" in message and "outside 0-120" in message
    assert "row 6" in message and "duplicate path (also row 2)" in message
    assert "row 7" in message and "empty subject id" in message
    scan = scan_csv_manifest(tmp_path / "m.csv")
    assert [row.path.name for row in scan.rows] == ["a.mp4"]
    assert [p.row for p in scan.problems] == [3, 4, 5, 6, 7]


def test_missing_columns_and_missing_file(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("file,age\nx.mp4,3\n")
    with pytest.raises(ManifestError, match="missing column\\(s\\) path, subject"):
        scan_csv_manifest(tmp_path / "m.csv").strict()
    with pytest.raises(ManifestError, match="manifest file not found"):
        scan_csv_manifest(tmp_path / "none.csv").strict()


def test_write_then_read_round_trip(tmp_path: Path) -> None:
    _touch(tmp_path, "v/a.mp4", "v/b.mp4")
    rows = [ManifestRow(tmp_path / "v/a.mp4", 40.0, "s1", "spontaneous", "heldout"), ManifestRow(tmp_path / "v/b.mp4", 9.5, "s2")]
    write_csv_manifest(rows, tmp_path / "manifest.csv")
    assert "v/a.mp4,40,s1,spontaneous,heldout" in (tmp_path / "manifest.csv").read_text()
    assert scan_csv_manifest(tmp_path / "manifest.csv").strict() == rows


UVA_DETAILS = """UvA-NEMO Smile Database
File details

Filename                       Subject  Gender  Age  Label
001_deliberate_smile_1.mp4      1        male    22   deliberate
001_spontaneous_smile_2.mp4     1        male    22
002_spontaneous_smile_1         2        female  8    spontaneous
003_deliberate_smile_3.mp4      3        female  n/a  deliberate
"""


def test_uva_nemo_reader_is_tolerant_and_strict_about_data(tmp_path: Path) -> None:
    _touch(tmp_path / "videos", "001_deliberate_smile_1.mp4", "001_spontaneous_smile_2.mp4", "002_spontaneous_smile_1.mp4")
    (tmp_path / "UvA-NEMO_Smile_Database_File_Details.txt").write_text(UVA_DETAILS)
    with pytest.raises(ManifestError) as err:
        scan_uva_nemo(tmp_path).strict()
    assert "row 8" in str(err.value) and "age 'n/a' is not a number" in str(err.value)
    assert "video file not found" in str(err.value)
    _touch(tmp_path / "videos", "003_deliberate_smile_3.mp4")
    (tmp_path / "UvA-NEMO_Smile_Database_File_Details.txt").write_text(UVA_DETAILS.replace("n/a", "45"))
    rows = scan_uva_nemo(tmp_path).strict()
    assert [(r.path.name, r.age, r.subject, r.label) for r in rows] == [
        ("001_deliberate_smile_1.mp4", 22.0, "1", "deliberate"),
        ("001_spontaneous_smile_2.mp4", 22.0, "1", "spontaneous"),
        ("002_spontaneous_smile_1.mp4", 8.0, "2", "spontaneous"),
        ("003_deliberate_smile_3.mp4", 45.0, "3", "deliberate"),
    ]
    assert scan_manifest(DataConfig(source="uva_nemo", path=str(tmp_path))).strict() == rows


def test_uva_nemo_without_details_file(tmp_path: Path) -> None:
    (tmp_path / "videos").mkdir()
    with pytest.raises(ManifestError, match="UvA-NEMO_Smile_Database_File_Details.txt not found"):
        scan_uva_nemo(tmp_path).strict()


def test_scan_manifest_by_config_source(tmp_path: Path) -> None:
    _touch(tmp_path, "a.mp4")
    (tmp_path / "manifest.csv").write_text("path,age,subject\na.mp4,20,s\n")
    by_folder = scan_manifest(DataConfig(source="synthetic", path=str(tmp_path))).strict()
    by_file = scan_manifest(DataConfig(source="csv", path=str(tmp_path / "manifest.csv"))).strict()
    assert by_folder == by_file == [ManifestRow(tmp_path / "a.mp4", 20.0, "s")]
