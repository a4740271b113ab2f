"""bench.backbone: the setups are measured side by side and written as one table."""

from __future__ import annotations

from age_estimation.bench import backbone


def test_the_cost_table_measures_every_setup(tmp_path, monkeypatch):
    """The from-scratch CNN and the frozen backbone (the fine-tuned one differs only by its trainable
    weights and costs a third model's compilation here)."""
    tiny = ["model.rnn_units=8", "model.embedding_units=8", "model.temporal_attention_units=4",
            "data.batch_size=2", "data.clip_length=3"]
    setups = dict(list(backbone.SETUPS.items())[:2])
    monkeypatch.setattr(backbone, "SETUPS", {name: [*sets, *tiny] for name, sets in setups.items()})
    out = tmp_path / "cost.md"
    assert backbone.main(["--config", "pipelines/default.yaml", "--rounds", "1", "--steps", "1",
                          "--latency-runs", "2", "--out", str(out)]) == 0
    rows = [line for line in out.read_text().splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [row.split(" | ")[0] for row in rows] == [f"| {name}" for name in setups]
    params, trainable = (int(cell.replace(",", "")) for cell in rows[1].split(" | ")[1:3])
    assert trainable < params / 5  # the frozen backbone's 600k weights are not trained
    assert rows[0].split(" | ")[4] == "1.00x"
