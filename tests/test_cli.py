from __future__ import annotations

import bentoml
import pandas as pd
import pytest
from typer.testing import CliRunner

from recommender.cli import app

runner = CliRunner()


def store_tags() -> set[str]:
    return {str(m.tag) for m in bentoml.models.list()}


@pytest.fixture(scope="module")
def built_model(tmp_path_factory, tiny_encoder_path):
    from tests.toy import INTERACTIONS, ITEMS

    d = tmp_path_factory.mktemp("toy")
    ITEMS.to_csv(d / "items.csv", index=False)
    INTERACTIONS.to_parquet(d / "interactions.parquet", index=False)
    res = runner.invoke(
        app,
        [
            "build",
            "--items",
            str(d / "items.csv"),
            "--interactions",
            str(d / "interactions.parquet"),
            "--name",
            "cli-toy",
            "--encoder",
            str(tiny_encoder_path),
        ],
    )
    assert res.exit_code == 0, res.output
    return res.output.strip().splitlines()[-1]


def test_build_prints_tag_and_summary(built_model):
    assert built_model.startswith("cli-toy:")
    assert built_model in store_tags()


def test_recommend_table_excludes_seen(built_model):
    res = runner.invoke(app, ["recommend", "--model", "cli-toy", "--user-id", "10", "-k", "6"])
    assert res.exit_code == 0, res.output
    assert "Heat (1995)" not in res.output and "Collateral" not in res.output
    assert "Toy Story (1995)" in res.output


def test_recommend_unknown_model_exits_non_zero(built_model):
    res = runner.invoke(app, ["recommend", "--model", "no-such-model", "--user-id", "1"])
    assert res.exit_code == 1
    assert "no-such-model" in res.output


def test_bad_tables_name_every_problem_and_leave_store_alone(
    tmp_path, items, interactions, tiny_encoder_path, built_model
):
    items.loc[1, "title"] = ""
    items.loc[3, "item_id"] = 1
    interactions.loc[0, "item_id"] = 4242
    items.to_csv(tmp_path / "items.csv", index=False)
    interactions.to_csv(tmp_path / "inter.csv", index=False)
    before = store_tags()
    res = runner.invoke(
        app,
        [
            "build",
            "--items",
            str(tmp_path / "items.csv"),
            "--interactions",
            str(tmp_path / "inter.csv"),
            "--name",
            "bad-toy",
            "--encoder",
            str(tiny_encoder_path),
        ],
    )
    assert res.exit_code == 1
    out = " ".join(res.output.split())
    # an empty CSV cell reads as missing: the title problem is reported as "not null"
    assert "title 1" in out.replace("│", "").replace("  ", " ") and "not null" in out
    assert "unique" in out and "item_id exists in items" in out
    assert "4242" in out
    assert store_tags() == before


def test_build_rejects_unknown_file_type(tmp_path, tiny_encoder_path):
    (tmp_path / "items.xlsx").write_text("x")
    res = runner.invoke(
        app,
        [
            "build",
            "--items",
            str(tmp_path / "items.xlsx"),
            "--interactions",
            str(tmp_path / "x.csv"),
            "--name",
            "x",
            "--encoder",
            str(tiny_encoder_path),
        ],
    )
    assert res.exit_code == 1 and ".xlsx" in res.output


def test_batch_in_process(tmp_path, built_model):
    pd.DataFrame({"user_id": [10, 20, 30, 999]}).to_csv(tmp_path / "users.csv", index=False)
    out = tmp_path / "recs.parquet"
    res = runner.invoke(
        app,
        [
            "batch",
            "--model",
            "cli-toy",
            "--input",
            str(tmp_path / "users.csv"),
            "--output",
            str(out),
            "-k",
            "3",
        ],
    )
    assert res.exit_code == 0, res.output
    recs = pd.read_parquet(out)
    assert list(recs.columns) == ["user_id", "rank", "item_id", "score", "title"]
    assert len(recs) == 12
    from tests.toy import INTERACTIONS

    seen = set(zip(INTERACTIONS.user_id, INTERACTIONS.item_id, strict=True))
    assert not any((u, i) in seen for u, i in zip(recs.user_id, recs.item_id, strict=True))
    assert recs.groupby("user_id")["rank"].apply(list).tolist() == [[1, 2, 3]] * 4


def test_groups_prints_portraits_and_writes_png(tmp_path, built_model):
    png = tmp_path / "groups.png"
    res = runner.invoke(app, ["groups", "--model", "cli-toy", "--png", str(png)])
    assert res.exit_code == 0, res.output
    assert "user groups" in res.output and "genres:" in res.output
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_explain_names_the_shared_director(built_model):
    res = runner.invoke(app, ["explain", "--model", "cli-toy", "--user-id", "10", "--item-id", "3"])
    assert res.exit_code == 0, res.output
    assert "Thief (1981)" in res.output and "Michael Mann" in res.output


def test_explain_unknown_item_fails_cleanly(built_model):
    res = runner.invoke(
        app, ["explain", "--model", "cli-toy", "--user-id", "10", "--item-id", "404"]
    )
    assert res.exit_code == 1 and "404" in res.output


def test_kg_stats_export_and_ego(tmp_path, built_model):
    import json

    res = runner.invoke(app, ["kg", "stats", "--model", "cli-toy", "--json"])
    assert res.exit_code == 0, res.output
    stats = json.loads(res.output)
    assert stats and "item" in json.dumps(stats)
    for fmt, name in (("json", "g.json"), ("graphml", "g.graphml")):
        res = runner.invoke(
            app,
            ["kg", "export", "--model", "cli-toy", "--out", str(tmp_path / name), "--format", fmt],
        )
        assert res.exit_code == 0, res.output
        assert (tmp_path / name).stat().st_size > 0
    res = runner.invoke(
        app,
        ["kg", "ego", "--model", "cli-toy", "--item-id", "1", "--out", str(tmp_path / "ego.png")],
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "ego.png").read_bytes()[:4] == b"\x89PNG"


def test_train_saves_a_new_version_with_a_tower(built_model):
    res = runner.invoke(app, ["train", "--model", built_model, "--name", "cli-toy-trained"])
    assert res.exit_code == 0, res.output
    tag = res.output.strip().splitlines()[-1]
    assert tag.startswith("cli-toy-trained:")
    meta = bentoml.models.get(tag).info.metadata
    assert "tower" in meta["components"]
    res = runner.invoke(app, ["recommend", "--model", tag, "--user-id", "10", "-k", "3"])
    assert res.exit_code == 0 and "Heat (1995)" not in res.output
