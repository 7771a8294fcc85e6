"""The AI movie expert: grounding, replies, streaming, failures, limits, offline mode.

The provider is a real OpenAI-compatible HTTP server on loopback (tests/llm_server.py)
and the real ``openai`` client talks to it through ``LLM_BASE_URL``.
"""

import json
import logging
import re
import secrets
import socket
import time
from datetime import timedelta

import pytest
from conftest import make_app
from llm_server import FakeLLM
from sqlalchemy import func, select

from api import limiter
from assistant import (
    APOLOGY,
    OFFLINE_NOTICE,
    PERSON_ALIASES_ZH,
    SYSTEM_PROMPT,
    TITLE_ALIASES_ZH,
    tokens_of,
)
from models import Client, Footprint, Movie, Rating, db, dispose_engines, utcnow

KEY = "sk-test-" + secrets.token_hex(16)
TOY_STORY = 1
HEAT = 273


@pytest.fixture(scope="session")
def llm():
    server = FakeLLM().start()
    yield server
    server.stop()


def _app(ml_db_url, tmp_path_factory, **overrides):
    tmp = tmp_path_factory.mktemp("chat")
    settings = {
        "MODEL_PATH": str(tmp / "model.joblib"),
        "POSTER_DIR": str(tmp / "posters"),
    }
    settings.update(overrides)
    return make_app(ml_db_url, **settings)


def neighbours(app, movie_id, n=8):
    """The loaded pack's hybrid neighbours of a film."""
    with app.app_context():
        pack = app.extensions["recommender"].get()
        assert pack is not None
        return [item for item, _ in pack.similar_items(movie_id, n=n, kind="hybrid")]


@pytest.fixture(scope="module")
def pack_path(ml_db_url, tmp_path_factory):
    """A model pack fitted on the MovieLens import (no evaluation: fit and save)."""
    from recommender import Recommender
    from train_evaluate_model import read_database

    movies, ratings = read_database(ml_db_url)
    path = tmp_path_factory.mktemp("pack") / "model.joblib"
    Recommender().fit(ratings, movies).to_pack().save(path)
    return str(path)


@pytest.fixture(scope="module")
def chat_app(ml_db_url, llm, pack_path, tmp_path_factory):
    """The app on the MovieLens import, with a key, the fake provider and a pack."""
    application = _app(
        ml_db_url,
        tmp_path_factory,
        MODEL_PATH=pack_path,
        LLM_API_KEY=KEY,
        LLM_BASE_URL=llm.base_url,
        LLM_MODEL="test-model",
        LLM_TIMEOUT=2.0,
    )
    yield application
    with application.app_context():
        dispose_engines()


@pytest.fixture(scope="module")
def offline_app(ml_db_url, pack_path, tmp_path_factory):
    """The app on the MovieLens import and a pack, with no LLM_API_KEY."""
    application = _app(ml_db_url, tmp_path_factory, MODEL_PATH=pack_path)
    yield application
    with application.app_context():
        dispose_engines()


@pytest.fixture(scope="module")
def packless_app(ml_db_url, tmp_path_factory):
    """The app with no LLM_API_KEY and no model pack (a fresh machine)."""
    application = _app(ml_db_url, tmp_path_factory)
    yield application
    with application.app_context():
        dispose_engines()


@pytest.fixture
def chat(chat_app, llm):
    llm.reset()
    chat_app.config["LLM_TIMEOUT"] = 2.0
    # The limiter is one object shared by every app; another test may have left it on.
    limiter.enabled = False
    return chat_app.test_client()


@pytest.fixture
def offline(offline_app):
    limiter.enabled = False
    return offline_app.test_client()


def ask(client, message, stream=False, **extra):
    path = "/api/ai/chat/stream" if stream else "/api/ai/chat"
    return client.post(path, json={"message": message, **extra}, **_remote())


def _remote(address=None):
    return {"environ_base": {"REMOTE_ADDR": address}} if address else {}


def events_of(response):
    """Parse a text/event-stream body into [(event, payload)]."""
    text = response.get_data(as_text=True)
    assert text.endswith("\n\n")
    events = []
    for block in text.split("\n\n")[:-1]:
        lines = block.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: ")
        assert len(lines) == 2
        events.append((lines[0][7:], json.loads(lines[1][6:])))
    return events


def titles(movies):
    return [movie["title"] for movie in movies]


def movie(app, movie_id):
    with app.app_context():
        found = db.session.get(Movie, movie_id)
        db.session.expunge(found)
        return found


def damped_score(app, film):
    """A film's mean rating shrunk towards the mean of all ratings (15 ratings)."""
    with app.app_context():
        mean = float(db.session.scalar(select(func.avg(Rating.rating))))
    return (film.score * film.rating_count + 15 * mean) / (film.rating_count + 15)


def context_ids(system, heading):
    """Return the film ids listed under a heading of the system prompt."""
    section = system.split(heading, 1)[1].split("\n\n", 1)[0]
    return [int(i) for i in re.findall(r"\[id (\d+)\]", section)]


# --- grounding and replies -----------------------------------------------------


def test_question_naming_toy_story_sends_its_facts(chat, chat_app, llm):
    llm.reply("《Toy Story》是皮克斯的第一部长片,也推荐《Aladdin》。")
    toy_story = movie(chat_app, TOY_STORY)

    response = ask(chat, "Tell me about Toy Story")

    assert response.status_code == 200
    body = response.get_json()
    assert body["reply"] == "《Toy Story》是皮克斯的第一部长片,也推荐《Aladdin》。"
    assert body["offline"] is False
    assert titles(body["movies"]) == ["Toy Story (1995)", "Aladdin (1992)"]
    assert body["movies"][0]["director"] == "John Lasseter"
    (sent,) = llm.requests
    assert sent.path == "/v1/chat/completions"
    assert sent.json["model"] == "test-model"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert [m["role"] for m in sent.messages] == ["system", "user"]
    assert sent.messages[-1]["content"] == "Tell me about Toy Story"
    system = sent.system
    assert system.startswith(SYSTEM_PROMPT)
    facts = system.split("Films named in the question:\n", 1)[1].split("\n")[0]
    assert facts.startswith("- 《Toy Story》 (1995) [id 1]; ")
    assert "genres: Animation, Children's, Comedy" in facts
    assert "director: John Lasseter" in facts
    assert "cast: Tom Hanks, Tim Allen, Don Rickles, Jim Varney" in facts
    assert (
        f"rating {toy_story.score:.1f}/5 from {toy_story.rating_count} ratings" in facts
    )
    assert "summary: A cowboy doll is profoundly threatened" in facts
    similar = context_ids(system, "Catalogue films most similar to Toy Story:")
    assert similar == neighbours(chat_app, TOY_STORY)
    assert len(similar) == 8 and TOY_STORY not in similar


def test_godfather_is_found_under_its_catalogue_title(chat, llm):
    llm.reply("经典。")

    ask(chat, "Is The Godfather better than its sequel?")

    system = llm.requests[0].system
    assert context_ids(system, "Films named in the question:") == [127]
    assert "《The Godfather》 (1972) [id 127]" in system


def test_genre_and_year_question_sends_best_matching_films(chat, chat_app, llm):
    llm.reply("推荐《Forrest Gump》。")

    response = ask(chat, "推荐几部1994年的喜剧")

    system = llm.requests[0].system
    heading = "Best-rated catalogue films (genres Comedy, released 1994), best first:"
    ids = context_ids(system, heading)
    assert len(ids) == 12
    with chat_app.app_context():
        found = db.session.scalars(select(Movie).where(Movie.id.in_(ids))).all()
        assert all("Comedy" in m.tag_list and m.year == 1994 for m in found)
        assert len(found) == 12
    assert titles(response.get_json()["movies"]) == ["Forrest Gump (1994)"]


def test_history_keeps_the_last_ten_turns_in_order(chat, llm):
    llm.reply("好的。")
    history = [
        {"role": "user" if i % 2 == 0 else "assistant", "content": f"turn {i}"}
        for i in range(12)
    ]

    response = ask(chat, "还有吗?", history=history)

    assert response.status_code == 200
    sent = llm.requests[0].messages
    assert [m["content"] for m in sent[1:-1]] == [f"turn {i}" for i in range(2, 12)]
    assert [m["role"] for m in sent[1:3]] == ["user", "assistant"]
    assert sent[-1] == {"role": "user", "content": "还有吗?"}


def test_reply_naming_no_film_gets_the_grounded_films(chat, llm):
    llm.reply("这是一部节奏紧凑的警匪片。")

    body = ask(chat, "What do you think of Heat?").get_json()

    assert body["movies"][0]["id"] == HEAT
    assert body["movies"][0]["title"] == "Heat (1995)"
    assert len(body["movies"]) == 8


def _register_client(client, app, auth, ratings=(), views=()):
    """Register and log in a client; give them ratings and views."""
    client_id = auth.register_and_login(client, auth.unique_username("chat"))["id"]
    now = utcnow()
    with app.app_context():
        for age, (movie_id, rating) in enumerate(ratings):
            db.session.add(
                Rating(
                    client_id=client_id,
                    movie_id=movie_id,
                    rating=rating,
                    rated_at=now - timedelta(minutes=age),
                )
            )
        for age, movie_id in enumerate(views):
            db.session.add(
                Footprint(
                    client_id=client_id,
                    movie_id=movie_id,
                    viewed_at=now - timedelta(minutes=age),
                )
            )
        db.session.commit()
    return client_id


def _delete_client(app, client_id):
    with app.app_context():
        db.session.delete(db.session.get(Client, client_id))
        db.session.commit()


def test_logged_in_client_history_and_recommendations_are_sent(
    chat, chat_app, llm, auth
):
    fargo, casablanca = 100, 483
    client_id = _register_client(
        chat,
        chat_app,
        auth,
        ratings=[(fargo, 5), (HEAT, 4), (TOY_STORY, 2)],
        views=[50],
    )
    llm.reply("根据你的口味,推荐《Casablanca》。")
    try:
        body = ask(chat, "今晚看什么好?").get_json()
    finally:
        _delete_client(chat_app, client_id)

    system = llm.requests[0].system
    assert context_ids(system, "This user's latest ratings:") == [
        fargo,
        HEAT,
        TOY_STORY,
    ]
    assert "《Fargo》 (1996) [id 100]" in system
    assert "the user rated it 5/5" in system
    assert context_ids(system, "Films this user viewed recently:") == [50]
    recommended = context_ids(system, "Recommended for this user by the site:")
    assert len(recommended) == 8
    assert not {fargo, HEAT, TOY_STORY} & set(recommended)
    section = system.split("Recommended for this user by the site:\n", 1)[1]
    # The pack's reasons name the films the client rated.
    assert all("; why: " in line for line in section.split("\n\n")[0].split("\n"))
    assert "Fargo" in section.split("\n\n")[0]
    assert titles(body["movies"]) == ["Casablanca (1942)"]
    assert body["movies"][0]["id"] == casablanca


# --- streaming ------------------------------------------------------------------


def test_stream_sends_deltas_then_the_cards(chat, llm):
    llm.stream(["《Toy", " Story》", "值得一看。"])

    response = ask(chat, "Toy Story 好看吗?", stream=True)

    assert response.status_code == 200
    assert response.mimetype == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    raw = response.get_data(as_text=True)
    assert raw.startswith('event: delta\ndata: {"content":"《Toy"}\n\n')
    events = events_of(response)
    assert events[:3] == [
        ("delta", {"content": "《Toy"}),
        ("delta", {"content": " Story》"}),
        ("delta", {"content": "值得一看。"}),
    ]
    name, final = events[3]
    assert name == "done" and len(events) == 4
    assert final["reply"] == "《Toy Story》值得一看。"
    assert titles(final["movies"]) == ["Toy Story (1995)"]
    assert llm.requests[0].json["stream"] is True


def test_stream_cut_by_the_provider_ends_with_an_error_event(chat, llm, caplog):
    llm.stream(["第一句。", "第二句"], end="drop")

    with caplog.at_level(logging.WARNING, logger="api.chat"):
        events = events_of(ask(chat, "Heat 怎么样?", stream=True))

    assert events[:2] == [
        ("delta", {"content": "第一句。"}),
        ("delta", {"content": "第二句"}),
    ]
    name, payload = events[2]
    assert name == "error" and len(events) == 3
    assert payload["reply"] == APOLOGY
    assert payload["movies"] == []
    assert payload["error"]["code"] == "llm_unavailable"
    assert "code=llm_unavailable cause=APIConnectionError" in caplog.text


def test_stream_error_event_from_the_provider_becomes_an_error_event(chat, llm):
    llm.stream(["好的,"], end="error")

    events = events_of(ask(chat, "推荐电影", stream=True))

    assert [name for name, _ in events] == ["delta", "error"]
    assert events[1][1]["error"]["code"] == "llm_error"
    assert events[1][1]["reply"] == APOLOGY


def test_stream_refused_before_the_first_byte_is_a_plain_503(chat, llm):
    llm.fail(401)

    response = ask(chat, "推荐电影", stream=True)

    assert response.status_code == 503
    assert response.mimetype == "application/json"
    assert response.get_json()["error"]["code"] == "llm_auth_failed"


def test_stream_stalling_mid_answer_ends_with_a_timeout_event(chat, chat_app, llm):
    chat_app.config["LLM_TIMEOUT"] = 0.5
    llm.stream(["我想想……"], end="stall")

    started = time.monotonic()
    events = events_of(ask(chat, "推荐电影", stream=True))
    elapsed = time.monotonic() - started

    assert events[0] == ("delta", {"content": "我想想……"})
    assert events[1][0] == "error" and len(events) == 2
    assert events[1][1]["error"]["code"] == "llm_timeout"
    assert elapsed < 1.5


# --- provider failures ----------------------------------------------------------


def test_slow_provider_gets_the_apology_within_the_timeout(chat, chat_app, llm):
    chat_app.config["LLM_TIMEOUT"] = 0.5
    llm.reply("太迟了", delay=5)

    started = time.monotonic()
    response = ask(chat, "推荐电影")
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert response.get_json() == {
        "reply": APOLOGY,
        "movies": [],
        "error": {"code": "llm_timeout", "message": "AI 模型响应超时"},
    }
    assert elapsed < 1.5
    assert len(llm.requests) == 1  # a timeout is not retried


def test_provider_401_is_a_503_without_retry(chat, llm):
    llm.fail(401, {"error": {"message": f"Incorrect API key provided: {KEY}"}})

    response = ask(chat, "推荐电影")

    assert response.status_code == 503
    body = response.get_json()
    assert body["reply"] == APOLOGY
    assert body["error"] == {
        "code": "llm_auth_failed",
        "message": "AI 模型服务认证失败",
    }
    assert KEY not in response.get_data(as_text=True)
    assert len(llm.requests) == 1


def test_provider_429_then_200_retries_once_and_succeeds(chat, llm):
    llm.fail(429, headers={"Retry-After": "0"})
    llm.reply("第二次成功了。")

    response = ask(chat, "推荐电影")

    assert response.status_code == 200
    assert response.get_json()["reply"] == "第二次成功了。"
    assert len(llm.requests) == 2
    assert llm.requests[0].json == llm.requests[1].json


@pytest.mark.parametrize(
    ("status", "code"), [(500, "llm_unavailable"), (429, "llm_rate_limited")]
)
def test_provider_failing_twice_is_a_503_after_one_retry(chat, llm, status, code):
    llm.fail(status, headers={"Retry-After": "0"})
    llm.fail(status, headers={"Retry-After": "0"})
    llm.reply("不会用到")

    response = ask(chat, "推荐电影")

    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == code
    assert len(llm.requests) == 2


@pytest.mark.parametrize(
    ("raw", "content_type"),
    [
        (b"<html>Welcome to nginx!</html>", "text/html"),
        (b"<html>Welcome to nginx!</html>", "application/json"),
        (b'{"object": "list", "data": []}', "application/json"),
    ],
)
def test_provider_answering_garbage_is_a_503(chat, llm, raw, content_type):
    llm.garbage(raw, content_type)

    response = ask(chat, "推荐电影")

    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "llm_error"
    assert response.get_json()["reply"] == APOLOGY


def test_provider_down_is_a_503(ml_db_url, tmp_path_factory):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    application = _app(
        ml_db_url,
        tmp_path_factory,
        LLM_API_KEY=KEY,
        LLM_BASE_URL=f"http://127.0.0.1:{port}/v1",
    )
    limiter.enabled = False

    response = ask(application.test_client(), "推荐电影")

    assert response.status_code == 503
    assert response.get_json()["error"]["code"] == "llm_unavailable"
    assert response.get_json()["reply"] == APOLOGY
    with application.app_context():
        dispose_engines()


def test_key_never_reaches_logs_or_responses(chat, llm, caplog):
    llm.reply("《Heat》很精彩。")
    llm.fail(401, {"error": {"message": f"Incorrect API key provided: {KEY}"}})
    llm.stream(["好", "的"])
    caplog.set_level(logging.DEBUG)

    responses = [
        ask(chat, "Heat 好看吗?"),
        ask(chat, "Heat 好看吗?"),
        ask(chat, "Heat 好看吗?", stream=True),
    ]

    assert [r.status_code for r in responses] == [200, 503, 200]
    assert all(KEY not in r.get_data(as_text=True) for r in responses)
    assert "chat provider failed: code=llm_auth_failed" in caplog.text
    assert KEY not in caplog.text
    assert KEY[8:] not in caplog.text
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in llm.requests)


# --- offline mode ---------------------------------------------------------------


def test_offline_films_like_heat_are_heats_neighbours(offline, offline_app):
    response = ask(offline, "Any films like Heat?")

    assert response.status_code == 200
    body = response.get_json()
    assert body["offline"] is True
    assert body["reply"].startswith(OFFLINE_NOTICE)
    assert "与《Heat》相似的影片:" in body["reply"]
    ids = [m["id"] for m in body["movies"]]
    assert ids == neighbours(offline_app, HEAT)
    assert len(ids) == 8 and HEAT not in ids
    # Real neighbours: crime thrillers of the time, Fargo among them.
    assert 100 in ids
    first = body["movies"][0]
    assert f"1. 《{first['title'][:-7]}》({first['year']})" in body["reply"]


def test_offline_without_a_pack_finds_heats_neighbours_by_genre(packless_app):
    limiter.enabled = False

    body = ask(packless_app.test_client(), "类似盗火线的电影").get_json()

    assert body["reply"].startswith(OFFLINE_NOTICE)
    ids = [m["id"] for m in body["movies"]]
    assert len(ids) == 8 and HEAT not in ids
    heat = movie(packless_app, HEAT)
    shared = [len(set(m["tags"]) & set(heat.tag_list)) for m in body["movies"]]
    assert shared == sorted(shared, reverse=True)
    assert shared[0] == len(heat.tag_list)


def test_offline_best_comedies_of_1994_are_ranked_by_damped_score(offline, offline_app):
    response = ask(offline, "What are the best comedies of 1994?")

    body = response.get_json()
    with offline_app.app_context():
        films = db.session.scalars(
            select(Movie).where(Movie.rating_count > 0, Movie.tags.like("%Comedy%"))
        ).all()
    candidates = [m for m in films if m.year == 1994 and "Comedy" in m.tag_list]
    candidates.sort(key=lambda m: (-damped_score(offline_app, m), -m.rating_count))
    assert [m["id"] for m in body["movies"]] == [m.id for m in candidates[:8]]
    assert "1994 年喜剧片中评分最高的" in body["reply"]
    # A film rated 4.0 by a single viewer does not beat well-rated popular ones.
    assert all(m["rating_count"] >= 10 for m in body["movies"][:3])


@pytest.mark.parametrize(
    ("question", "director"),
    [
        ("有哪些希区柯克导演的电影?", "Alfred Hitchcock"),
        ("Which films by Steven Spielberg should I see?", "Steven Spielberg"),
        ("Hitchcock films, please", "Alfred Hitchcock"),
    ],
)
def test_offline_director_gets_their_films(offline, offline_app, question, director):
    body = ask(offline, question).get_json()

    assert body["reply"].startswith(OFFLINE_NOTICE)
    assert f"{director} 执导的影片" in body["reply"]
    with offline_app.app_context():
        directed = db.session.scalars(
            select(Movie).where(Movie.director.like(f"%{director}%"))
        ).all()
    expected = {m.id for m in directed if m.rating_count and director in m.director}
    assert len(body["movies"]) == min(8, len(expected)) >= 6
    assert {m["id"] for m in body["movies"]} <= expected
    by_id = {m.id: m for m in directed}
    damped = [damped_score(offline_app, by_id[m["id"]]) for m in body["movies"]]
    assert damped == sorted(damped, reverse=True)


def test_offline_stream_sends_the_same_answer(offline):
    plain = ask(offline, "Any films like Heat?").get_json()

    events = events_of(ask(offline, "Any films like Heat?", stream=True))

    name, final = events[-1]
    assert name == "done"
    assert final == plain
    assert "".join(p["content"] for n, p in events[:-1]) == plain["reply"]


def test_offline_question_naming_nothing_gets_popular_films(offline):
    body = ask(offline, "随便推荐点什么").get_json()

    assert "本站评分最高的热门影片" in body["reply"]
    assert len(body["movies"]) == 8
    assert all(m["rating_count"] >= 50 for m in body["movies"])


def test_every_chinese_alias_names_a_catalogue_film_or_person(offline, offline_app):
    ask(offline, "warm up")
    index = offline_app.extensions["assistant"]._index

    missing = [
        alias
        for alias, name in TITLE_ALIASES_ZH.items()
        if tokens_of(name) not in index.titles
    ]
    missing += [
        alias
        for alias, name in PERSON_ALIASES_ZH.items()
        if tokens_of(name) not in index.directors | index.actors
    ]

    assert missing == []
    assert index.find("我想看教父和星球大战").movie_ids == [127, 50]


def test_catalogue_index_follows_new_films_but_not_clicks(offline, offline_app):
    ask(offline, "warm up")
    assistant = offline_app.extensions["assistant"]
    before = assistant._index
    with offline_app.app_context():
        db.session.execute(
            Movie.__table__.update()
            .where(Movie.id == HEAT)
            .values(click_count=Movie.click_count + 1, updated_at=utcnow())
        )
        film = Movie(title="Zorblax Returns (2026)", tags="Sci-Fi", rating_count=0)
        db.session.commit()
    ask(offline, "warm up again")
    assert assistant._index is before  # names unchanged: no rebuild

    with offline_app.app_context():
        db.session.add(film)
        db.session.commit()
        film_id = film.id
    try:
        body = ask(offline, "Tell me about Zorblax Returns").get_json()
    finally:
        with offline_app.app_context():
            db.session.delete(db.session.get(Movie, film_id))
            db.session.commit()

    assert assistant._index is not before
    assert body["movies"][0]["id"] == film_id
    # No release date, but the title names the year.
    assert "《Zorblax Returns》(2026)" in body["reply"]


# --- limits -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        ({}, 400, "message_required"),
        ({"message": ""}, 400, "message_required"),
        ({"message": "   "}, 400, "message_required"),
        ({"message": 42}, 400, "message_required"),
        ({"message": ["推荐"]}, 400, "message_required"),
        (["推荐"], 400, "invalid_body"),
        ({"message": "x" * 2001}, 413, "message_too_long"),
        ({"message": "推荐", "history": "hi"}, 400, "invalid_history"),
        (
            {"message": "推荐", "history": [{"role": "system", "content": "x"}]},
            400,
            "invalid_history",
        ),
        (
            {"message": "推荐", "history": [{"role": "user", "content": 1}]},
            400,
            "invalid_history",
        ),
        ({"message": "推荐", "model": "gpt-5"}, 422, "validation_error"),
    ],
)
@pytest.mark.parametrize("path", ["/api/ai/chat", "/api/ai/chat/stream"])
def test_bad_requests_are_refused(offline, path, payload, status, code):
    response = offline.post(path, json=payload)

    assert response.status_code == status
    assert response.get_json()["error"]["code"] == code
    assert response.get_json()["error"]["message"]


def test_malformed_json_is_refused(offline):
    response = offline.post(
        "/api/ai/chat", data="{not json", content_type="application/json"
    )

    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_json"


def test_message_of_2000_characters_is_accepted(offline):
    response = ask(offline, "Heat " + "好" * 1995)

    assert response.status_code == 200
    assert response.get_json()["offline"] is True


@pytest.fixture
def limited(ml_db_url, tmp_path_factory):
    """An app with rate limits on (fresh in-memory counters)."""
    application = _app(
        ml_db_url,
        tmp_path_factory,
        RATELIMIT_ENABLED=True,
        RATELIMIT_STORAGE_URI="memory://",
    )
    yield application
    limiter.enabled = False
    with application.app_context():
        dispose_engines()


def test_rate_limit_per_address(limited):
    client = limited.test_client()
    statuses = [
        client.post(
            "/api/ai/chat" if i % 2 else "/api/ai/chat/stream",
            json={"message": "推荐"},
            **_remote("10.0.0.1"),
        ).status_code
        for i in range(30)
    ]
    assert statuses == [200] * 30

    refused = client.post(
        "/api/ai/chat", json={"message": "推荐"}, **_remote("10.0.0.1")
    )
    other = client.post("/api/ai/chat", json={"message": "推荐"}, **_remote("10.0.0.2"))

    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert 0 < int(refused.headers["Retry-After"]) <= 60
    assert other.status_code == 200


def test_rate_limit_per_client_follows_the_account(limited, auth):
    client = limited.test_client()
    client_id = _register_client(client, limited, auth)
    try:
        statuses = [
            client.post(
                "/api/ai/chat", json={"message": "推荐"}, **_remote(f"10.1.0.{i}")
            ).status_code
            for i in range(10)
        ]
        refused = client.post(
            "/api/ai/chat/stream", json={"message": "推荐"}, **_remote("10.1.1.1")
        )
        visitor = limited.test_client().post(
            "/api/ai/chat", json={"message": "推荐"}, **_remote("10.1.0.1")
        )
    finally:
        _delete_client(limited, client_id)

    assert statuses == [200] * 10
    assert refused.status_code == 429
    assert refused.get_json()["error"]["code"] == "rate_limited"
    assert visitor.status_code == 200
