"""bench.backbone: the three setups are measured side by side and written as one table."""

from __future__ import annotations

from age_estimation.bench import backbone


def test_the_cost_table_measures_every_setup(tmp_path, monkeypatch):
    tiny = ["model.rnn_units=8", "model.embedding_units=8", "model.temporal_attention_units=4",
            "data.batch_size=2", "data.clip_length=3"]
    monkeypatch.setattr(backbone, "SETUPS", {name: [*sets, *tiny] for name, sets in backbone.SETUPS.items()})
    out = tmp_path / "cost.md"
    assert backbone.main(["--config", "pipelines/default.yaml", "--rounds", "1", "--steps", "1",
                          "--latency-runs", "2", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0] for row in rows] == [f"| {name}" for name in backbone.SETUPS]
    frozen, tuned = (int(row.split(" | ")[2].replace(",", "")) for row in rows[1:])
    assert frozen < tuned  # the frozen backbone's weights are not trained
    assert rows[0].split(" | ")[4] == "1.00x"
