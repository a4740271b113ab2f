"""bench.backbone: each setup is measured and written as one row of the cost table."""

from __future__ import annotations

from age_estimation.bench import backbone


def test_the_cost_table_measures_a_setup_and_writes_its_row(tmp_path, monkeypatch):
    """One tiny setup measured for real (each setup costs two compilations; the backbone setups' models
    are built and checked in test_backbone_export), then the table's ratio and counts."""
    tiny = ["model.conv_filters=[4, 4]", "model.attention_after_block=1", "model.rnn_units=8",
            "model.embedding_units=8", "model.temporal_attention_units=4", "model.dynamics=false",
            "data.batch_size=2", "data.clip_length=3"]
    monkeypatch.setattr(backbone, "SETUPS", {"tiny": tiny})
    out = tmp_path / "cost.md"
    assert backbone.main(["--config", "pipelines/default.yaml", "--rounds", "1", "--steps", "1",
                          "--latency-runs", "2", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 2 and rows[1].startswith("| tiny | ") and rows[1].split(" | ")[4] == "1.00x"
    params, trainable = (int(cell.replace(",", "")) for cell in rows[1].split(" | ")[1:3])
    assert 0 < trainable <= params


def test_the_table_shows_each_setups_figures():
    spread = {"median": 0.2, "min": 0.1, "max": 0.3}
    rows = [{"setup": "a", "params": 1000, "trainable": 900, "step_seconds": spread, "step_ratio": 1.0,
             "clip_ms": {"median": 9.0, "min": 8.0, "max": 10.0}},
            {"setup": "b", "params": 5000, "trainable": 100, "step_seconds": spread, "step_ratio": 0.58,
             "clip_ms": {"median": 20.0, "min": 19.0, "max": 21.0}}]
    page = backbone.markdown(rows, "python -m age_estimation.bench.backbone", "Config x.")
    assert page.startswith("<!-- written by: python -m age_estimation.bench.backbone on ")
    assert "| b | 5,000 | 100 | 0.200 (0.100-0.300) | 0.58x | 20.0 (19.0-21.0) |" in page
