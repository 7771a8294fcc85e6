"""The training script: splits, metrics, folds, database training and the CLI."""

import json

import numpy as np
import pytest
from conftest import ML100K_DIR

import train_evaluate_model as trainer
from recommender import RatingData, load_pack

# Fold u1 of MovieLens 100k with the default parameters, recorded from
# `train_evaluate_model.py --folds ml100k` (the README has the five-fold means).
RECORDED_U1 = {
    "rmse": 0.9216,
    "ndcg_at_10": 0.4261,
    "coverage_at_10": 0.1861,
    "popular_ndcg_at_10": 0.2445,
    "movie_mean_rmse": 1.0334,
}


@pytest.fixture(scope="module")
def fold_u1():
    result, _ = trainer.run_folds(ML100K_DIR, folds=(1,))
    return result


def test_fold_u1_metrics_stay_at_the_recorded_values(fold_u1):
    model = fold_u1["model"]
    baselines = fold_u1["baselines"]

    assert model["rmse"] == pytest.approx(RECORDED_U1["rmse"], abs=0.002)
    assert model["ndcg_at_10"] == pytest.approx(RECORDED_U1["ndcg_at_10"], abs=0.003)
    assert model["coverage_at_10"] == pytest.approx(
        RECORDED_U1["coverage_at_10"], abs=0.005
    )
    assert baselines["popular"]["ndcg_at_10"] == pytest.approx(
        RECORDED_U1["popular_ndcg_at_10"], abs=0.001
    )
    assert baselines["movie_mean"]["rmse"] == pytest.approx(
        RECORDED_U1["movie_mean_rmse"], abs=0.001
    )
    assert model["n_users"] == 456
    assert set(fold_u1["algorithms"]) == {"hybrid", "itemcf", "content", "popular"}


def test_fold_results_table_names_every_algorithm_and_baseline(fold_u1):
    table = trainer.format_table(fold_u1).splitlines()

    labels = [line.split("  ")[0] for line in table[1:]]
    assert labels == [
        "hybrid (ours)",
        "itemcf",
        "content",
        "popular",
        "baseline: movie_mean",
        "baseline: popular",
    ]
    assert "NDCG@10" in table[0]


def test_ranking_metrics_on_a_hand_computed_case():
    # User 0: relevant {1, 3}; list [1, 2, 3] -> hits at ranks 1 and 3.
    # User 1: relevant {4}; list [0, 2, 3] -> no hit.
    relevant = np.zeros((2, 5), dtype=bool)
    relevant[0, [1, 3]] = True
    relevant[1, 4] = True
    top = np.array([[1, 2, 3], [0, 2, 3]])

    result = trainer.ranking_metrics(top, relevant, relevant.sum(axis=1), 5, 3)

    np.testing.assert_allclose(result["precision_at_10"], [2 / 3, 0])
    np.testing.assert_allclose(result["recall_at_10"], [1.0, 0])
    ideal = 1 + 1 / np.log2(3)
    np.testing.assert_allclose(result["ndcg_at_10"], [(1 + 1 / np.log2(4)) / ideal, 0])
    np.testing.assert_allclose(result["map_at_10"], [(1 + 2 / 3) / 2, 0])
    np.testing.assert_allclose(result["hit_rate_at_10"], [1, 0])


def test_rating_metrics_keep_the_designs_precision_under_its_honest_name():
    result = trainer._rating_metrics(np.array([3.0, 4.0, 1.0]), np.array([4, 4, 5]))

    assert result["rmse"] == pytest.approx(np.sqrt((1 + 0 + 16) / 3))
    assert result["mae"] == pytest.approx(5 / 3)
    assert result["within_one_star"] == pytest.approx(2 / 3)


def test_tiny_data_reports_unknown_errors_not_nan(tmp_path):
    ratings = RatingData([1, 1, 2, 2, 3], [10, 11, 10, 11, 12], [5, 5, 4, 5, 3])

    metrics = trainer.train(None, tmp_path / "m.joblib", ratings=ratings, movies=[])

    assert metrics["rmse"] is None
    assert metrics["baselines"]["movie_mean"]["mae"] is None
    assert metrics["ndcg_at_10"] == 0.0
    text = (tmp_path / "m.metrics.json").read_text()
    assert "NaN" not in text
    assert json.loads(text)["within_one_star"] is None


def test_split_holds_out_a_fifth_of_each_user_reproducibly():
    ratings = trainer.read_ratings_file(ML100K_DIR / "u.data")

    train, test = trainer.split_per_user(ratings, 0.2, seed=3)
    again_train, again_test = trainer.split_per_user(ratings, 0.2, seed=3)
    _, other_test = trainer.split_per_user(ratings, 0.2, seed=4)

    assert len(train) + len(test) == 100_000
    np.testing.assert_array_equal(test.movie_ids, again_test.movie_ids)
    assert not np.array_equal(test.movie_ids, other_test.movie_ids)
    per_user = np.bincount(ratings.user_ids.astype(int))
    held = np.bincount(test.user_ids.astype(int), minlength=len(per_user))
    users = np.flatnonzero(per_user)
    np.testing.assert_array_equal(held[users], np.floor(per_user[users] * 0.2))
    assert len(np.unique(train.user_ids)) == 943


def test_main_trains_from_the_database(ml_db_url, tmp_path, capsys):
    output = tmp_path / "pack" / "model.joblib"
    metrics_out = tmp_path / "metrics.json"

    code = trainer.main(
        [
            "--database-url",
            ml_db_url,
            "--output",
            str(output),
            "--metrics-out",
            str(metrics_out),
            "--no-progress",
        ]
    )

    assert code == 0
    pack = load_pack(output)
    assert pack.n_items >= 1682
    assert pack.meta["fingerprint"]["n_ratings"] >= 100_000
    document = json.loads(metrics_out.read_text())
    beside = json.loads((tmp_path / "pack" / "model.metrics.json").read_text())
    assert document == beside == pack.metrics
    assert set(trainer.METRIC_KEYS) <= set(document)
    assert set(document["baselines"]) == {"popular", "movie_mean"}
    assert set(document["baselines"]["popular"]) == set(trainer.METRIC_KEYS)
    assert document["eval_date"]
    assert 0.85 < document["rmse"] < 0.97
    assert document["ndcg_at_10"] > document["baselines"]["popular"]["ndcg_at_10"]
    assert document["rmse"] < document["baselines"]["movie_mean"]["rmse"]
    out = capsys.readouterr().out
    assert "hybrid (ours)" in out
    assert "ratings, 943" in out or "ratings, " in out
    assert pack.title(50) == "Star Wars (1977)"


def test_train_reports_progress_and_returns_metrics(tmp_path):
    ratings = trainer.read_ratings_file(ML100K_DIR / "u1.test")
    movies = trainer.read_movielens_items(ML100K_DIR)
    stages = []

    metrics = trainer.train(
        None,
        tmp_path / "model.joblib",
        progress_callback=lambda stage, fraction: stages.append((stage, fraction)),
        ratings=ratings,
        movies=movies,
    )

    assert stages[-1] == ("done", 1.0)
    names = [stage for stage, _ in stages]
    assert [n for n in dict.fromkeys(names) if n.startswith("final: ")] == [
        "final: " + stage for stage in trainer.STAGES[:-1]
    ]
    assert "evaluation: evaluate" in names
    assert all(0.0 <= fraction <= 1.0 for _, fraction in stages)
    assert set(trainer.METRIC_KEYS) <= set(metrics)
    assert "table" not in metrics
    assert load_pack(tmp_path / "model.joblib").meta["n_ratings"] == 20_000


def test_main_reads_a_ratings_file(tmp_path):
    lines = (ML100K_DIR / "u.data").read_text().splitlines()[:5000]
    source = tmp_path / "ratings.tsv"
    source.write_text("\n".join(lines) + "\n")
    csv_source = tmp_path / "ratings.csv"
    csv_source.write_text(
        "userId,movieId,rating,timestamp\n"
        + "\n".join(line.replace("\t", ",") for line in lines)
        + "\n"
    )

    assert trainer.read_ratings_file(csv_source).ratings.tolist() == (
        trainer.read_ratings_file(source).ratings.tolist()
    )
    code = trainer.main(
        ["--ratings-file", str(source), "--output", str(tmp_path / "m.joblib")]
    )

    assert code == 0
    pack = load_pack(tmp_path / "m.joblib")
    assert pack.meta["n_ratings"] == 5000
    assert pack.title(pack.item_ids[0]).startswith("电影 ")


@pytest.mark.parametrize(
    "argv",
    [
        ["--k", "0"],
        ["--seed", "-1"],
        ["--folds", "ml1m", str(ML100K_DIR)],
        ["--folds", "ml100k", "/nope"],
    ],
)
def test_main_rejects_bad_arguments(argv, capsys):
    assert trainer.main(argv) == 2
    assert "error" in capsys.readouterr().err


def test_main_fails_cleanly_without_ratings(tmp_path, capsys):
    empty = tmp_path / "empty.tsv"
    empty.write_text("")

    code = trainer.main(["--ratings-file", str(empty), "--output", str(tmp_path / "m")])

    assert code == 1
    assert "no ratings" in capsys.readouterr().err


def test_rating_data_rejects_mismatched_columns():
    with pytest.raises(ValueError, match="differ in length"):
        RatingData([1, 2], [1], [5, 4])
