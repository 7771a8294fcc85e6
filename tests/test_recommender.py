"""The recommender library: neighbours, recommendations, predictions and packs."""

import logging
import os
from datetime import datetime, timedelta

import joblib
import numpy as np
import pytest
from conftest import ML100K_DIR

import recommender
from recommender import (
    POPULAR_REASON,
    ModelPack,
    PackError,
    PackHolder,
    RatingData,
    Recommender,
    load_pack,
    tokenize_text,
)
from train_evaluate_model import read_movielens_items, read_ratings_file

STAR_WARS, EMPIRE, JEDI, TOY_STORY, FARGO = 50, 172, 181, 1, 100
T0 = datetime(2026, 1, 1, 12, 0)


@pytest.fixture(scope="module")
def ml_movies():
    """MovieLens 100k films with the details CSV (director, actors, summary)."""
    return read_movielens_items(ML100K_DIR)


@pytest.fixture(scope="module")
def ml_ratings():
    return read_ratings_file(ML100K_DIR / "u.data")


@pytest.fixture(scope="module")
def pack(ml_movies, ml_ratings):
    """A pack fitted on all of MovieLens 100k (a few seconds, once per module)."""
    return Recommender().fit(ml_ratings, ml_movies).to_pack(metrics={"rmse": 0.9})


@pytest.fixture(scope="module")
def tags_by_id(ml_movies):
    return {m["id"]: set(m["tags"].split(",")) for m in ml_movies}


def user_history(ratings, user_id, limit=None):
    """[(movie_id, rating, rated_at)] of one MovieLens user, oldest first."""
    mask = ratings.user_ids == user_id
    order = np.argsort(ratings.timestamps[mask], kind="stable")
    rows = [
        (int(m), int(r), datetime.fromtimestamp(float(t)))
        for m, r, t in zip(
            ratings.movie_ids[mask][order],
            ratings.ratings[mask][order],
            ratings.timestamps[mask][order],
            strict=True,
        )
    ]
    return rows[:limit] if limit else rows


def test_toy_story_content_neighbours_are_animated_or_childrens(pack, tags_by_id):
    similar = pack.similar_items(TOY_STORY, n=10, kind="content")

    assert len(similar) == 10
    family = [m for m, _ in similar if tags_by_id[m] & {"Animation", "Children's"}]
    assert len(family) >= 8
    scores = [score for _, score in similar]
    assert scores == sorted(scores, reverse=True)
    assert TOY_STORY not in [m for m, _ in similar]


def test_star_wars_cf_neighbours_include_the_sequels(pack):
    similar = [m for m, _ in pack.similar_items(STAR_WARS, n=10, kind="cf")]

    assert EMPIRE in similar
    assert JEDI in similar
    hybrid = [m for m, _ in pack.similar_items(STAR_WARS, n=10, kind="hybrid")]
    assert {EMPIRE, JEDI} <= set(hybrid)


def test_unknown_film_has_no_neighbours_and_no_prediction(pack):
    assert pack.similar_items(999_999, n=5) == []
    assert pack.predict([(STAR_WARS, 5, T0)], 999_999) is None


def test_unknown_kind_or_algorithm_is_rejected(pack):
    with pytest.raises(ValueError, match="kind"):
        pack.similar_items(STAR_WARS, kind="magic")
    with pytest.raises(ValueError, match="algorithm"):
        pack.recommend([], algorithm="magic")


def test_recommendations_never_include_rated_or_excluded_films(pack, ml_ratings):
    history = user_history(ml_ratings, 1, limit=50)
    rated = {m for m, _, _ in history}
    excluded = {m.movie_id for m in pack.recommend(history, n=3)}

    for algorithm in ("hybrid", "itemcf", "content", "popular"):
        recommended = pack.recommend(
            history, n=12, algorithm=algorithm, exclude=excluded
        )
        ids = [r.movie_id for r in recommended]
        assert len(ids) == 12 == len(set(ids))
        assert not set(ids) & rated
        assert not set(ids) & excluded


def test_a_new_rating_changes_the_recommendations_at_once(pack, ml_ratings):
    history = user_history(ml_ratings, 1, limit=20)
    before = [r.movie_id for r in pack.recommend(history, n=12)]

    newest = history[-1][2] + timedelta(minutes=1)
    after_rating = history + [(before[0], 5, newest), (STAR_WARS, 5, newest)]
    after = [r.movie_id for r in pack.recommend(after_rating, n=12)]

    assert before[0] not in after
    assert STAR_WARS not in after
    assert after != before[1:]


@pytest.mark.parametrize("algorithm", ["hybrid", "itemcf", "content"])
def test_serving_ranks_like_the_evaluated_score_matrix(pack, ml_ratings, algorithm):
    import scipy.sparse as sp

    history = user_history(ml_ratings, 5, limit=40)
    indices, weights, _, rated = pack._profile(history)
    profile = sp.csr_matrix(
        (weights, (np.zeros(len(indices), int), indices)), shape=(1, pack.n_items)
    )
    scores = pack.score_matrix(profile, algorithm)[0]
    scores[list(rated)] = -1
    expected = [int(pack.item_ids[i]) for i in np.argsort(-scores, kind="stable")[:10]]

    served = pack.recommend(history, n=10, algorithm=algorithm)

    assert [r.movie_id for r in served] == expected
    np.testing.assert_allclose(
        [r.score for r in served], np.sort(scores)[::-1][:10], rtol=1e-4
    )


def test_reasons_name_the_rated_film_and_its_stars(pack, ml_ratings):
    history = user_history(ml_ratings, 1, limit=50)
    rating_of = {m: r for m, r, _ in history}
    recommended = pack.recommend(history, n=12, algorithm="itemcf")

    rated_reasons = [r for r in recommended if r.evidence["kind"] == "rated"]
    assert len(rated_reasons) >= 10
    for rec in rated_reasons:
        source = rec.evidence["source_movie_id"]
        assert source in rating_of
        title = pack.title(source)
        assert title and "(" in title
        assert rec.reason == f"因为你给《{title}》打了{rating_of[source]}星"
        assert rec.evidence["rating"] == rating_of[source]


def test_content_reasons_name_the_film_and_what_they_share(pack, tags_by_id):
    recommended = pack.recommend([(TOY_STORY, 5, T0)], n=5, algorithm="content")

    first = recommended[0]
    assert first.evidence["kind"] == "similar"
    assert first.evidence["source_movie_id"] == TOY_STORY
    shared = first.evidence["shared"]
    assert shared and set(shared) & {"Animation", "Children's", "Comedy"}
    assert first.reason == f"与《Toy Story (1995)》相似:{'、'.join(shared)}"
    assert set(shared) & tags_by_id[first.movie_id]


def test_views_count_as_evidence(pack):
    recommended = pack.recommend([], views=[(STAR_WARS, T0)], n=5, algorithm="itemcf")

    assert recommended[0].evidence == {
        "kind": "viewed",
        "source_movie_id": STAR_WARS,
        "model": "cf",
    }
    assert recommended[0].reason == "因为你最近浏览了《Star Wars (1977)》"
    assert {EMPIRE, JEDI} & {r.movie_id for r in recommended}


def test_empty_history_gets_damped_popularity(pack, ml_ratings):
    recommended = pack.recommend([], n=10)

    assert [r.movie_id for r in recommended] == pack.popular(10)
    assert {r.reason for r in recommended} == {POPULAR_REASON}
    assert {r.evidence["kind"] for r in recommended} == {"popular"}
    # Damped, not the raw mean: the films with one or two 5-star ratings (raw
    # mean 5.0) are not on top; the top films have hundreds of ratings.
    counts = np.bincount(ml_ratings.movie_ids.astype(int))
    assert min(counts[m] for m in pack.popular(10)) >= 100
    assert pack.popular(3, exclude=pack.popular(1)) == pack.popular(4)[1:]


def test_recent_ratings_weigh_more(pack):
    old = T0 - timedelta(days=3 * 365)
    toy_recent = [(TOY_STORY, 5, T0), (STAR_WARS, 5, old)]
    star_recent = [(TOY_STORY, 5, old), (STAR_WARS, 5, T0)]

    first_a = pack.recommend(toy_recent, n=1, algorithm="itemcf")[0]
    first_b = pack.recommend(star_recent, n=1, algorithm="itemcf")[0]

    assert first_a.evidence["source_movie_id"] == TOY_STORY
    assert first_b.evidence["source_movie_id"] == STAR_WARS


def test_predict_folds_in_the_users_bias(pack):
    generous = [(m, 5, T0) for m in (1, 2, 3, 4, 5, 7, 8, 9, 11, 12)]
    harsh = [(m, 1, T0) for m in (1, 2, 3, 4, 5, 7, 8, 9, 11, 12)]

    high = pack.predict(generous, FARGO)
    low = pack.predict(harsh, FARGO)
    nobody = pack.predict([], FARGO)

    assert 1.0 <= low < nobody < high <= 5.0
    assert nobody == pytest.approx(
        pack.state["global_mean"] + float(pack.state["item_bias"][FARGO - 1]), 1e-5
    )


def test_predictions_match_the_evaluation_path(pack, ml_ratings):
    from train_evaluate_model import predict_test

    history = user_history(ml_ratings, 7)
    train = RatingData(
        [7] * len(history),
        [m for m, _, _ in history],
        [r for _, r, _ in history],
    )
    targets = [STAR_WARS, FARGO, TOY_STORY, 1000]
    test = RatingData([7] * 4, targets, [3.0] * 4)

    batch = predict_test(pack, train, test)

    single = [pack.predict(history, m) for m in targets]
    np.testing.assert_allclose(batch, single, rtol=1e-5)


def test_tokenizer_keeps_words_and_splits_chinese_into_bigrams():
    assert tokenize_text("星球大战 Star Wars: a new hope (1977)") == [
        "星球",
        "球大",
        "大战",
        "star",
        "wars",
        "new",
        "hope",
    ]
    assert tokenize_text(None) == []
    assert tokenize_text("") == []


@pytest.fixture(scope="module")
def chinese_pack(ml_movies, ml_ratings):
    """MovieLens plus three films with Chinese text only, one never rated."""
    movies = ml_movies + [
        {
            "id": 5001,
            "title": "流浪地球",
            "tags": "Sci-Fi",
            "summary": "太阳即将毁灭,人类建造巨大的推进器,带着地球逃离太阳系。",
        },
        {
            "id": 5002,
            "title": "流浪地球2",
            "tags": "Sci-Fi",
            "summary": "人类建造推进器之前,太阳危机爆发,地球逃离太阳系的计划开始。",
        },
        {
            "id": 5003,
            "title": "我不是药神",
            "tags": "Drama",
            "summary": "一个卖保健品的小老板,从印度代购仿制药,救助白血病患者。",
        },
        {"id": 5004},
    ]
    keep = ml_ratings.user_ids <= 300
    small = ml_ratings.subset(keep)
    extra = RatingData([1, 2, 3], [5001, 5001, 5003], [5, 4, 4], [8.8e8] * 3)
    ratings = RatingData(
        np.r_[small.user_ids, extra.user_ids],
        np.r_[small.movie_ids, extra.movie_ids],
        np.r_[small.ratings, extra.ratings],
        np.r_[small.timestamps, extra.timestamps],
    )
    return Recommender().fit(ratings, movies).to_pack()


def test_films_with_chinese_summaries_are_content_neighbours(chinese_pack):
    similar = chinese_pack.similar_items(5001, n=3, kind="content")

    assert similar[0][0] == 5002
    assert 5003 not in [m for m, _ in similar[:1]]
    back = chinese_pack.similar_items(5002, n=1, kind="hybrid")
    assert back[0][0] == 5001


def test_film_without_any_text_or_rating_breaks_nothing(chinese_pack):
    assert chinese_pack.similar_items(5004, n=5, kind="content") == []
    assert chinese_pack.similar_items(5004, n=5, kind="cf") == []
    assert chinese_pack.title(5004) == "电影 5004"
    prediction = chinese_pack.predict([(5002, 4, T0)], 5004)
    assert prediction == pytest.approx(chinese_pack.state["global_mean"], abs=0.5)
    ids = [r.movie_id for r in chinese_pack.recommend([(5004, 5, T0)], n=5)]
    assert len(ids) == 5 and 5004 not in ids


def test_catalogue_without_any_text_still_trains():
    ratings = RatingData([1, 1, 2, 2, 3], [10, 11, 10, 11, 12], [5, 5, 4, 5, 3])
    pack = Recommender().fit(ratings, [{"id": 10}, {"id": 11}, {"id": 13}]).to_pack()

    assert pack.n_items == 4
    assert pack.similar_items(10, kind="content") == []
    assert [m for m, _ in pack.similar_items(10, kind="cf")] == [11]
    assert pack.popular(5) == [11, 10, 12]


def test_similarity_lists_are_bounded_never_dense(pack):
    k = pack.params["n_neighbors"]
    assert pack.state["cf_indices"].shape == (pack.n_items, k)
    assert pack.state["content_indices"].shape == (pack.n_items, 50)
    assert pack.state["rating_indices"].shape[1] == pack.params["rating_neighbors"]


def test_pack_round_trip_keeps_every_answer(pack, ml_ratings, tmp_path):
    path = tmp_path / "model.joblib"
    pack.save(path)

    loaded = load_pack(path)

    assert isinstance(loaded.state["cf_scores"], np.memmap)
    history = user_history(ml_ratings, 1, limit=30)
    assert loaded.recommend(history, n=12) == pack.recommend(history, n=12)
    assert loaded.similar_items(TOY_STORY) == pack.similar_items(TOY_STORY)
    assert loaded.predict(history, FARGO) == pack.predict(history, FARGO)
    assert loaded.metrics == {"rmse": 0.9}
    meta = loaded.meta
    assert meta["format_version"] == recommender.FORMAT_VERSION
    assert meta["n_items"] == 1682
    assert meta["n_ratings"] == 100_000
    assert meta["fingerprint"]["n_users"] == 943
    assert len(meta["fingerprint"]["sha256"]) == 64
    assert set(meta["versions"]) >= {"numpy", "scipy", "scikit-learn", "joblib"}
    assert meta["parameters"]["n_neighbors"] == pack.params["n_neighbors"]
    assert os.path.getsize(path) < 5_000_000


def test_pack_holds_only_plain_data(pack):
    allowed = (np.ndarray, list, dict, str, int, float, type(None))
    for key, value in pack.state.items():
        assert isinstance(value, allowed), key


def test_corrupt_pack_fails_with_one_clear_message(tmp_path):
    path = tmp_path / "model.joblib"
    path.write_bytes(b"\x80\x04not a pickle at all")

    with pytest.raises(PackError, match="corrupt or unreadable.*retrain"):
        load_pack(path)
    with pytest.raises(PackError, match="does not exist"):
        load_pack(tmp_path / "missing.joblib")


def test_wrong_version_pack_fails_with_one_clear_message(pack, tmp_path):
    path = tmp_path / "model.joblib"
    joblib.dump(dict(pack.state, format_version=999), path)

    with pytest.raises(PackError, match="format version 999 is not 1"):
        load_pack(path)


def test_holder_reloads_on_change_and_keeps_the_old_pack_on_errors(
    pack, tmp_path, caplog
):
    path = tmp_path / "model.joblib"
    holder = PackHolder(path, check_interval=0)
    assert holder.get() is None
    assert holder.status()["loaded"] is False

    pack.save(path)
    first = holder.get()
    assert first is not None
    status = holder.status()
    assert status == {
        "loaded": True,
        "path": str(path),
        "version": 1,
        "created_at": pack.meta["created_at"],
        "n_items": 1682,
        "error": None,
    }
    assert holder.get() is first

    caplog.set_level(logging.WARNING, logger="recommender")
    path.write_bytes(b"garbage" * 10)
    assert holder.get() is first
    assert holder.get() is first
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "corrupt" in warnings[0].getMessage()
    assert "previous pack" in warnings[0].getMessage()
    assert holder.status()["loaded"] is True
    assert "corrupt" in holder.status()["error"]

    pack.save(path)
    second = holder.get()
    assert second is not first
    assert holder.status()["error"] is None


def test_holder_checks_the_file_at_most_once_per_interval(pack, tmp_path):
    path = tmp_path / "model.joblib"
    holder = PackHolder(path, check_interval=3600)
    assert holder.get() is None

    pack.save(path)

    assert holder.get() is None
    holder._checked_at -= 3601
    assert holder.get() is not None


def test_a_failed_write_leaves_the_previous_pack_whole(pack, tmp_path, monkeypatch):
    path = tmp_path / "model.joblib"
    pack.save(path)
    before = path.read_bytes()
    seen_during_write = []

    def broken_dump(state, filename):
        with open(filename, "wb") as stream:
            stream.write(b"half a pack")
        seen_during_write.append(path.read_bytes() == before)
        raise OSError("disk full")

    monkeypatch.setattr(joblib, "dump", broken_dump)
    with pytest.raises(OSError, match="disk full"):
        pack.save(path)

    assert seen_during_write == [True]
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.joblib"]
    assert load_pack(path).n_items == 1682


def test_app_serves_without_a_pack_and_reports_a_corrupt_one(client, app):
    path = app.config["MODEL_PATH"]
    with open(path, "wb") as stream:
        stream.write(b"not a model pack")

    body = client.get("/api/health").get_json()

    assert body["status"] == "ok"
    assert body["model"]["loaded"] is False
    assert "corrupt" in body["model"]["error"]


def test_unfitted_recommender_refuses_to_make_a_pack():
    with pytest.raises(recommender.NotFittedError):
        Recommender().to_pack()


def test_pack_rejects_state_without_a_version():
    with pytest.raises(PackError, match="format version"):
        ModelPack({"params": {}})
