"""The AI movie expert: grounding in the catalogue, prompts and offline answers.

The chat route (``api/chat.py``) stays thin: it validates the request and turns
provider failures into responses. This module finds the catalogue films a question
is about (titles, directors, actors, genres and years, through an in-memory index
built once per process and rebuilt when the ``movie`` table changes), gathers a
logged-in client's history and recommendations, builds the messages sent to any
OpenAI-compatible chat API, calls it with a deadline and one retry, and answers from
the catalogue alone when no API key is configured.
"""

import hashlib
import logging
import re
import sys
import threading
import time
import unicodedata
from dataclasses import dataclass, field

import httpx2
from sqlalchemy import case, func, literal, or_, select

from models import Footprint, Movie, Rating, damped_score, db, genre_name

logger = logging.getLogger(__name__)

APOLOGY = "抱歉,我现在的思维有点混乱,请稍后再试。"
OFFLINE_NOTICE = (
    "AI 模型尚未配置(未设置 LLM_API_KEY),以下回答直接来自本站片库和推荐系统。"
)
SYSTEM_PROMPT = (
    "You are the film expert of MovieRec, a film recommendation website. "
    "Answer concisely and warmly in the user's language (Simplified Chinese when "
    "they write Chinese). Prefer films from the catalogue context below: they are "
    "the films this site can show. When you mention a catalogue film, write its "
    "title exactly as listed, inside 《》, for example 《Toy Story》. Use the facts "
    "in the context; do not invent ratings, directors or cast. If a film the user "
    "names is not in the catalogue, say so briefly. Keep answers under 200 words "
    "unless the user asks for more."
)

MAX_MESSAGE_CHARS = 2000
MAX_HISTORY_TURNS = 10
MAX_CARDS = 8
# Bayesian damping: a film's mean is pulled towards the catalogue mean as if it had
# this many extra ratings at that mean, so 5 stars from 2 people do not win.
RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 2.0
# Below this share of the deadline a retry cannot finish, so it is not attempted.
MIN_RETRY_BUDGET = 0.2

GENRES = (
    "Action",
    "Adventure",
    "Animation",
    "Children's",
    "Comedy",
    "Crime",
    "Documentary",
    "Drama",
    "Fantasy",
    "Film-Noir",
    "Horror",
    "Musical",
    "Mystery",
    "Romance",
    "Sci-Fi",
    "Thriller",
    "War",
    "Western",
)
# English genre words, as normalized token tuples.
GENRE_WORDS = {
    ("action",): "Action",
    ("adventure",): "Adventure",
    ("adventures",): "Adventure",
    ("animation",): "Animation",
    ("animated",): "Animation",
    ("cartoon",): "Animation",
    ("cartoons",): "Animation",
    ("children",): "Children's",
    ("childrens",): "Children's",
    ("kids",): "Children's",
    ("family",): "Children's",
    ("comedy",): "Comedy",
    ("comedies",): "Comedy",
    ("funny",): "Comedy",
    ("crime",): "Crime",
    ("gangster",): "Crime",
    ("documentary",): "Documentary",
    ("documentaries",): "Documentary",
    ("drama",): "Drama",
    ("dramas",): "Drama",
    ("fantasy",): "Fantasy",
    ("noir",): "Film-Noir",
    ("film", "noir"): "Film-Noir",
    ("horror",): "Horror",
    ("scary",): "Horror",
    ("musical",): "Musical",
    ("musicals",): "Musical",
    ("mystery",): "Mystery",
    ("mysteries",): "Mystery",
    ("romance",): "Romance",
    ("romantic",): "Romance",
    ("love", "story"): "Romance",
    ("love", "stories"): "Romance",
    ("sci", "fi"): "Sci-Fi",
    ("scifi",): "Sci-Fi",
    ("science", "fiction"): "Sci-Fi",
    ("thriller",): "Thriller",
    ("thrillers",): "Thriller",
    ("war",): "War",
    ("western",): "Western",
    ("westerns",): "Western",
}
# Chinese genre words, matched as substrings (Chinese has no spaces).
GENRE_WORDS_ZH = {
    "喜剧": "Comedy",
    "搞笑": "Comedy",
    "动作": "Action",
    "冒险": "Adventure",
    "动画": "Animation",
    "卡通": "Animation",
    "儿童": "Children's",
    "少儿": "Children's",
    "犯罪": "Crime",
    "黑帮": "Crime",
    "纪录": "Documentary",
    "剧情": "Drama",
    "奇幻": "Fantasy",
    "魔幻": "Fantasy",
    "黑色电影": "Film-Noir",
    "恐怖": "Horror",
    "歌舞": "Musical",
    "音乐剧": "Musical",
    "悬疑": "Mystery",
    "推理": "Mystery",
    "爱情": "Romance",
    "浪漫": "Romance",
    "科幻": "Sci-Fi",
    "惊悚": "Thriller",
    "战争": "War",
    "西部": "Western",
}
# Chinese names of well-known catalogue films and directors, mapped to the
# normalized English title or name the index knows.
TITLE_ALIASES_ZH = {
    "玩具总动员": "toy story",
    "教父2": "the godfather part ii",
    "教父续集": "the godfather part ii",
    "教父": "the godfather",
    "星球大战": "star wars",
    "帝国反击战": "the empire strikes back",
    "绝地归来": "return of the jedi",
    "泰坦尼克号": "titanic",
    "阿甘正传": "forrest gump",
    "肖申克的救赎": "the shawshank redemption",
    "低俗小说": "pulp fiction",
    "盗火线": "heat",
    "冰血暴": "fargo",
    "沉默的羔羊": "the silence of the lambs",
    "辛德勒的名单": "schindlers list",
    "卡萨布兰卡": "casablanca",
    "七宗罪": "seven",
    "勇敢的心": "braveheart",
    "狮子王": "the lion king",
    "侏罗纪公园": "jurassic park",
    "终结者2": "terminator 2 judgment day",
    "终结者": "the terminator",
    "异形": "alien",
    "回到未来": "back to the future",
    "非常嫌疑犯": "the usual suspects",
    "猜火车": "trainspotting",
    "公民凯恩": "citizen kane",
    "后窗": "rear window",
    "迷魂记": "vertigo",
    "惊魂记": "psycho",
    "发条橙": "a clockwork orange",
    "闪灵": "the shining",
    "大白鲨": "jaws",
    "出租车司机": "taxi driver",
    "美国往事": "once upon a time in america",
    "阿拉丁": "aladdin",
    "美女与野兽": "beauty and the beast",
    "独立日": "independence day",
    "勇闯夺命岛": "the rock",
    "碟中谍": "mission impossible",
    "黑衣人": "men in black",
    "第五元素": "the fifth element",
    "这个杀手不太冷": "the professional",
    "现代启示录": "apocalypse now",
    "银翼杀手": "blade runner",
    "2001太空漫游": "2001 a space odyssey",
}
PERSON_ALIASES_ZH = {
    "斯皮尔伯格": "steven spielberg",
    "希区柯克": "alfred hitchcock",
    "库布里克": "stanley kubrick",
    "昆汀": "quentin tarantino",
    "塔伦蒂诺": "quentin tarantino",
    "斯科塞斯": "martin scorsese",
    "伍迪艾伦": "woody allen",
    "伍迪·艾伦": "woody allen",
    "卡梅隆": "james cameron",
    "科波拉": "francis ford coppola",
    "迈克尔曼": "michael mann",
    "迈克尔·曼": "michael mann",
    "吕克贝松": "luc besson",
    "吕克·贝松": "luc besson",
    "汤姆汉克斯": "tom hanks",
    "汤姆·汉克斯": "tom hanks",
    "阿尔帕西诺": "al pacino",
    "阿尔·帕西诺": "al pacino",
    "德尼罗": "robert de niro",
    "罗伯特德尼罗": "robert de niro",
    "布拉德皮特": "brad pitt",
    "布拉德·皮特": "brad pitt",
    "金凯瑞": "jim carrey",
    "成龙": "jackie chan",
    "周润发": "chow yun fat",
    "吴宇森": "john woo",
    "李安": "ang lee",
}
SIMILAR_CUES_EN = {"like", "similar", "resembling"}
SIMILAR_CUES_ZH = ("类似", "相似", "像", "同类", "差不多")
ARTICLES = {"the", "a", "an", "la", "le", "les", "l", "il", "el", "los", "las"}
ARTICLES.update({"der", "die", "das", "det", "den", "lo", "i"})
# Words that open English questions: capitalized there, they name no film or person
# ("Love stories...", "Best comedies..."), and are never a surname on their own.
COMMON_WORDS = set(
    "a about after all an and any anything are best big can could do does find "
    "for from funny get give good great have help hi hello how i if in is it just "
    "like list looking love me more movie movies my name need new no not of old "
    "on one or other please recommend seven show similar so some something suggest "
    "tell thanks the top want we what when where which who why with would you".split()
)

_APOSTROPHES = re.compile(r"['’`´]")
_TOKEN = re.compile(r"[A-Za-z0-9]+")
_CJK = re.compile(r"[\u3400-\u9fff]")
_QUOTED = re.compile(r"[《\"“「](.+?)[》\"”」]")
_YEAR = re.compile(r"19\d\d|20[0-2]\d")
_DECADE = re.compile(
    r"(?<![\dA-Za-z])(19|20)?(\d)0\s*(?:s(?![A-Za-z])|年代)", re.IGNORECASE
)
_TITLE_YEAR = re.compile(r"\s*\((\d{4})\)\s*$")
_PARENS = re.compile(r"\(([^()]*)\)")
_TRAILING_ARTICLE = re.compile(r"^(.*),\s*([A-Za-z']+)$")


def fold(text):
    """Return ``text`` without accents and apostrophes (case kept)."""
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text)
        text = "".join(ch for ch in text if not unicodedata.combining(ch))
    return _APOSTROPHES.sub("", text)


def tokens_of(text):
    """Return the lower-case Latin/digit tokens of ``text`` as a tuple."""
    return tuple(token.lower() for token in _TOKEN.findall(fold(text)))


def display_title(title):
    """Turn "Godfather, The (1972)" into "The Godfather" (the year is dropped)."""
    base = _TITLE_YEAR.sub("", title or "").strip()
    main = _PARENS.sub("", base).strip()
    match = _TRAILING_ARTICLE.match(main)
    if match and match.group(2).lower().strip("'") in ARTICLES:
        # "Cité des enfants perdus, La" and "Ecole, L'" both move the article.
        article = match.group(2)
        joiner = "" if article.endswith("'") else " "
        main = f"{article}{joiner}{match.group(1)}"
    return main or base


def title_keys(title):
    """Return the token tuples under which a catalogue title can be named."""
    base = _TITLE_YEAR.sub("", title or "").strip()
    variants = [_PARENS.sub("", base).strip()]
    variants += [alt.strip() for alt in _PARENS.findall(base)]
    keys = set()
    for variant in variants:
        match = _TRAILING_ARTICLE.match(variant)
        if match and match.group(2).lower().strip("'") in ARTICLES:
            keys.add(tokens_of(match.group(1)))
            keys.add(tokens_of(f"{match.group(2)} {match.group(1)}"))
        else:
            keys.add(tokens_of(variant))
            words = tokens_of(variant)
            if len(words) > 1 and words[0] in ARTICLES:
                keys.add(words[1:])
    return {key for key in keys if key}


def is_weak_key(key):
    """A key of one real word ("heat", "the fan") needs more evidence to count."""
    return len([token for token in key if token not in ARTICLES]) <= 1


def split_names(value):
    return [name.strip() for name in (value or "").split(",") if name.strip()]


@dataclass
class Mentions:
    """What a question names: catalogue films, people, genres and years."""

    movie_ids: list = field(default_factory=list)
    directors: list = field(default_factory=list)
    actors: list = field(default_factory=list)
    genres: list = field(default_factory=list)
    year_range: tuple | None = None
    wants_similar: bool = False

    @property
    def empty(self):
        return not (
            self.movie_ids
            or self.directors
            or self.actors
            or self.genres
            or self.year_range
        )


def catalogue_rows():
    """Return (id, title, director, actors, year) of every film."""
    return db.session.execute(
        select(
            Movie.id,
            Movie.title,
            Movie.director,
            Movie.actors,
            Movie.year,
        ).order_by(Movie.id)
    ).all()


def catalogue_mean():
    """Return the mean of all ratings (the prior of the damped score)."""
    total, count = db.session.execute(
        select(
            func.sum(Movie.score * Movie.rating_count),
            func.sum(Movie.rating_count),
        ).where(Movie.score.is_not(None))
    ).one()
    return float(total) / float(count) if count else 3.0


def fingerprint(rows):
    return hashlib.blake2b(repr([tuple(row) for row in rows]).encode()).hexdigest()


class CatalogueIndex:
    """Names of every film, director and actor, for matching questions quickly.

    Built from one query over the ``movie`` table; matching a question is a walk
    over its tokens with dictionary look-ups, whatever the size of the catalogue.
    """

    def __init__(self, rows, mean_score, signature=None):
        self.signature = signature
        self.fingerprint = None
        self.mean_score = mean_score
        self.titles = {}  # token tuple -> [movie ids]
        self.years = {}  # movie id -> release year
        self.directors = {}  # token tuple -> {display names}
        self.actors = {}
        self.film_count = {}  # display name -> films directed or acted in
        self.max_key_length = 1
        surnames = {}
        for movie_id, title, director, actors, year in rows:
            self.years[movie_id] = year
            for key in title_keys(title):
                self.titles.setdefault(key, []).append(movie_id)
            for table, names in (
                (self.directors, split_names(director)),
                (self.actors, split_names(actors)),
            ):
                for name in names:
                    key = tokens_of(name)
                    if not key:
                        continue
                    table.setdefault(key, set()).add(name)
                    self.film_count[name] = self.film_count.get(name, 0) + 1
                    if len(key) > 1:
                        surnames.setdefault((key[-1],), set()).add(
                            (table is self.directors, name)
                        )
        for key, owners in surnames.items():
            # A surname alone names the one person who dominates it here, with
            # several films ("Hitchcock", "Hanks"); never a common word ("Young").
            if len(key[0]) < 4 or key[0] in COMMON_WORDS:
                continue
            counts = sorted(
                ((self.film_count[name], name) for _, name in owners), reverse=True
            )
            top, name = counts[0]
            if top < 3 or (len(counts) > 1 and counts[1][0] * 3 > top):
                continue
            is_director = (True, name) in owners
            table = self.directors if is_director else self.actors
            table.setdefault(key, set()).add(name)
        for table in (self.titles, self.directors, self.actors):
            if table:
                self.max_key_length = max(self.max_key_length, *map(len, table))

    @classmethod
    def build(cls, signature=None):
        """Load every film's names from the database."""
        rows = catalogue_rows()
        index = cls(rows, catalogue_mean(), signature)
        index.fingerprint = fingerprint(rows)
        return index

    def find(self, text, strict=False):
        """Return the :class:`Mentions` in a question, or in a reply (``strict``).

        A one-word title or surname ("Heat", "Hanks") counts when it is quoted, or
        capitalized inside a sentence, or (questions only) written among Chinese
        text; "films like heat" in lower case names no film.
        """
        mentions = Mentions()
        folded = fold(text)
        loose = bool(_CJK.search(folded)) and not strict
        quoted = {tokens_of(part) for part in _QUOTED.findall(folded)}

        # Chinese aliases and genre words first, cut out so that their characters
        # cannot match again.
        found = []
        for alias in sorted(TITLE_ALIASES_ZH, key=len, reverse=True):
            if alias in folded:
                key = tokens_of(TITLE_ALIASES_ZH[alias])
                found.append((folded.index(alias), self.titles.get(key, [])))
                # Same length, so positions of the other aliases do not move.
                folded = folded.replace(alias, " " * len(alias))
        for _, ids in sorted(found):
            self._add_ids(mentions, ids)
        for alias in sorted(PERSON_ALIASES_ZH, key=len, reverse=True):
            if alias in folded:
                self._add_person(mentions, tokens_of(PERSON_ALIASES_ZH[alias]))
                folded = folded.replace(alias, " ")
        for word in sorted(GENRE_WORDS_ZH, key=len, reverse=True):
            if word in folded:
                self._add_genre(mentions, GENRE_WORDS_ZH[word])
                folded = folded.replace(word, " ")
        if any(cue in folded for cue in SIMILAR_CUES_ZH):
            mentions.wants_similar = True

        decade = _DECADE.search(folded)
        if decade:
            century = int(decade.group(1) or 19) * 100
            start = century + int(decade.group(2)) * 10
            mentions.year_range = (start, start + 9)
            folded = folded[: decade.start()] + " " + folded[decade.end() :]
        years = set()

        matches = list(_TOKEN.finditer(folded))
        words = [match.group().lower() for match in matches]
        sentence_start = {0}
        for index in range(1, len(matches)):
            between = folded[matches[index - 1].end() : matches[index].start()]
            if re.search(r"[.!?。!?\n]", between):
                sentence_start.add(index)

        def counts(start, key):
            if key in quoted or not is_weak_key(key):
                return True
            if len(key) == 1 and key[0].isdigit():
                return False  # "1941" is a year far more often than the film
            if loose:
                return True
            main = next(
                (i for i in range(start, start + len(key)) if words[i] not in ARTICLES),
                start,
            )
            if not matches[main].group()[0].isupper():
                return False
            return main not in sentence_start or words[main] not in COMMON_WORDS

        position = 0
        while position < len(words):
            step = 1
            longest = min(self.max_key_length, len(words) - position)
            for length in range(longest, 0, -1):
                key = tuple(words[position : position + length])
                ids = self.titles.get(key)
                person = key in self.directors or key in self.actors
                if (ids or person) and counts(position, key):
                    if ids:
                        step = length + self._add_title(
                            mentions, ids, words[position + length :]
                        )
                    else:
                        step = length
                    if person:
                        self._add_person(mentions, key)
                    break
                if key in GENRE_WORDS:
                    self._add_genre(mentions, GENRE_WORDS[key])
                    step = length
                    break
            else:
                word = words[position]
                if word in SIMILAR_CUES_EN:
                    mentions.wants_similar = True
                elif _YEAR.fullmatch(word):
                    years.add(int(word))
            position += step

        if years:
            mentions.year_range = (min(years), max(years))
        return mentions

    def _add_title(self, mentions, ids, rest):
        """Add a named title; a year right after it picks among remakes.

        Returns the number of extra tokens used (1 when the year was consumed).
        """
        if rest and rest[0].isdigit():
            dated = [i for i in ids if str(self.years.get(i)) == rest[0]]
            if dated:
                self._add_ids(mentions, dated)
                return 1
        self._add_ids(mentions, ids)
        return 0

    def _add_ids(self, mentions, ids):
        for movie_id in ids:
            if movie_id not in mentions.movie_ids:
                mentions.movie_ids.append(movie_id)

    def _add_person(self, mentions, key):
        for table, found in (
            (self.directors, mentions.directors),
            (self.actors, mentions.actors),
        ):
            for name in sorted(table.get(key, ())):
                if name not in found:
                    found.append(name)

    @staticmethod
    def _add_genre(mentions, genre):
        if genre not in mentions.genres:
            mentions.genres.append(genre)


class Assistant:
    """Per-app state of the movie expert: the catalogue index and the API client."""

    def __init__(self):
        self._index = None
        self._client = None
        self._lock = threading.Lock()

    def index(self):
        """Return the catalogue index, rebuilt when film names have changed.

        A cheap aggregate notices any change to the movie table; only when the
        names themselves differ (not after a click or a rating) is it rebuilt.
        """
        signature = tuple(
            db.session.execute(
                select(
                    func.count(Movie.id),
                    func.max(Movie.id),
                    func.max(Movie.updated_at),
                )
            ).one()
        )
        index = self._index
        if index is not None and index.signature == signature:
            return index
        with self._lock:
            index = self._index
            if index is not None and index.signature == signature:
                return index
            started = time.perf_counter()
            rows = catalogue_rows()
            if index is not None and index.fingerprint == fingerprint(rows):
                index.mean_score = catalogue_mean()
                index.signature = signature
                return index
            index = CatalogueIndex(rows, catalogue_mean(), signature)
            index.fingerprint = fingerprint(rows)
            self._index = index
            logger.info(
                "chat catalogue index built: films=%d title keys=%d in %.0f ms",
                len(rows),
                len(index.titles),
                (time.perf_counter() - started) * 1000,
            )
            return index

    def client(self, config):
        """Return the OpenAI client for this app, made once."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    # Retries are ours (one, on 429/5xx only, within the deadline):
                    # the library would also retry timeouts and double the wait.
                    self._client = provider_library().OpenAI(
                        api_key=config["LLM_API_KEY"],
                        base_url=config["LLM_BASE_URL"],
                        timeout=config["LLM_TIMEOUT"],
                        max_retries=0,
                    )
        return self._client


# --- catalogue queries ------------------------------------------------------------


def has_tag(tag):
    return (literal(",") + Movie.tags + literal(",")).like(f"%,{tag},%")


def load_movies(ids):
    """Return the films with these ids, in the order given (missing ones dropped)."""
    if not ids:
        return []
    found = db.session.scalars(select(Movie).where(Movie.id.in_(ids))).all()
    by_id = {movie.id: movie for movie in found}
    return [by_id[movie_id] for movie_id in ids if movie_id in by_id]


def best_movies(index, genres=(), year_range=None, people=(), exclude=(), n=10):
    """Return the best films by damped score matching genres, years and people."""
    query = select(Movie).where(Movie.rating_count > 0)
    for genre in genres:
        query = query.where(has_tag(genre))
    if year_range:
        start, end = year_range
        query = query.where(
            Movie.year >= start,
            Movie.year <= end,
        )
    if people:
        # A LIKE finds the candidates; the exact name check below drops "Tom Hanks"
        # matching "Tom Hanksworth".
        query = query.where(
            or_(
                *[
                    column.like(f"%{name}%")
                    for name in people
                    for column in (Movie.director, Movie.actors)
                ]
            )
        )
    if exclude:
        query = query.where(Movie.id.not_in(list(exclude)))
    score = damped_score(index.mean_score)
    query = query.order_by(score.desc(), Movie.rating_count.desc(), Movie.id)
    if not people:
        return db.session.scalars(query.limit(n)).all()
    wanted = set(people)
    movies = [
        movie
        for movie in db.session.scalars(query)
        if wanted & set(split_names(movie.director) + split_names(movie.actors))
    ]
    return movies[:n]


def similar_movies(index, movie, pack, n=8):
    """Return films like ``movie``: the model's neighbours, else shared genres."""
    if pack is not None:
        try:
            neighbours = pack.similar_items(movie.id, n=n, kind="hybrid")
        except (KeyError, IndexError, ValueError):
            neighbours = []
        movies = load_movies([neighbour_id for neighbour_id, _ in neighbours])
        if movies:
            return movies
    tags = movie.tag_list
    if not tags:
        return best_movies(index, exclude=[movie.id], n=n)
    shared = sum((case((has_tag(tag), 1), else_=0) for tag in tags), literal(0))
    query = (
        select(Movie)
        .where(Movie.id != movie.id, Movie.rating_count > 0, shared > 0)
        .order_by(
            shared.desc(),
            damped_score(index.mean_score).desc(),
            Movie.id,
        )
        .limit(n)
    )
    return db.session.scalars(query).all()


@dataclass
class Profile:
    """A logged-in client's recent ratings, views and top recommendations."""

    rated: list = field(default_factory=list)  # [(Movie, rating)]
    viewed: list = field(default_factory=list)  # [Movie]
    recommended: list = field(default_factory=list)  # [(Movie, reason)]


def client_profile(index, client_id, pack, n_recent=8, n_recommended=8):
    """Return a client's recent history and top recommendations."""
    ratings = db.session.execute(
        select(Rating.movie_id, Rating.rating, Rating.rated_at)
        .where(Rating.client_id == client_id)
        .order_by(Rating.rated_at.desc(), Rating.movie_id)
    ).all()
    views = db.session.execute(
        select(Footprint.movie_id, Footprint.viewed_at)
        .where(Footprint.client_id == client_id)
        .order_by(Footprint.viewed_at.desc(), Footprint.id.desc())
        .limit(50)
    ).all()

    recommended = []
    if pack is not None:
        recommendations = pack.recommend(
            ratings=[tuple(row) for row in ratings],
            views=[tuple(row) for row in views],
            n=n_recommended,
        )
        movies = load_movies([item.movie_id for item in recommendations])
        reasons = {item.movie_id: item.reason for item in recommendations}
        recommended = [(movie, reasons.get(movie.id)) for movie in movies]
    if not recommended:
        # LIMITATION: without a model pack, recommendations are the best-rated
        # films the client has not rated.
        movies = best_movies(
            index, exclude=[row.movie_id for row in ratings], n=n_recommended
        )
        recommended = [(movie, None) for movie in movies]

    recent_ids = [row.movie_id for row in ratings[:n_recent]]
    view_ids = list(dict.fromkeys(row.movie_id for row in views))[:n_recent]
    by_id = {movie.id: movie for movie in load_movies(recent_ids + view_ids)}
    rating_of = {row.movie_id: row.rating for row in ratings[:n_recent]}
    return Profile(
        rated=[(by_id[i], rating_of[i]) for i in recent_ids if i in by_id],
        viewed=[by_id[i] for i in view_ids if i in by_id],
        recommended=recommended,
    )


# --- grounding ---------------------------------------------------------------------


@dataclass
class Grounding:
    """What the model is told, and the films offered as cards."""

    mentions: Mentions
    named: list = field(default_factory=list)  # films named in the question
    similar: dict = field(default_factory=dict)  # named film id -> [Movie]
    fitting: list = field(default_factory=list)  # films fitting genres/years/people
    fitting_label: str = ""
    profile: Profile | None = None
    popular: list = field(default_factory=list)

    def films(self):
        """Every film in the context, once, most relevant first."""
        seen = {}
        for movie in self.named:
            seen.setdefault(movie.id, movie)
        for movies in self.similar.values():
            for movie in movies:
                seen.setdefault(movie.id, movie)
        for movie in self.fitting:
            seen.setdefault(movie.id, movie)
        if self.profile:
            for movie, _ in self.profile.recommended:
                seen.setdefault(movie.id, movie)
        for movie in self.popular:
            seen.setdefault(movie.id, movie)
        return list(seen.values())

    def default_cards(self):
        """Films to show when the reply names none of them."""
        if self.mentions.wants_similar and self.similar:
            movies = [movie for group in self.similar.values() for movie in group]
        else:
            movies = self.named + [m for g in self.similar.values() for m in g]
        movies += self.fitting
        if not movies and self.profile:
            movies = [movie for movie, _ in self.profile.recommended]
        if not movies:
            movies = self.popular
        return list({movie.id: movie for movie in movies}.values())[:MAX_CARDS]


def ground(index, question, client_id, pack):
    """Find the catalogue films a question is about or that fit it."""
    mentions = index.find(question)
    grounding = Grounding(mentions=mentions)
    grounding.named = load_movies(mentions.movie_ids[:5])
    for movie in grounding.named[:2]:
        grounding.similar[movie.id] = similar_movies(index, movie, pack)
    people = mentions.directors + mentions.actors
    if people or mentions.genres or mentions.year_range:
        grounding.fitting = best_movies(
            index,
            genres=mentions.genres,
            year_range=mentions.year_range,
            people=people,
            n=12,
        )
        grounding.fitting_label = describe_filters(mentions)
    if client_id is not None:
        grounding.profile = client_profile(index, client_id, pack)
    if mentions.empty and not grounding.profile:
        grounding.popular = best_movies(index, n=10)
    return grounding


def describe_filters(mentions):
    """Describe the genres, years and people of a question in Chinese."""
    parts = []
    if mentions.year_range:
        start, end = mentions.year_range
        parts.append(f"{start} 年" if start == end else f"{start}-{end} 年")
    people = mentions.directors + mentions.actors
    if people:
        parts.append("、".join(people) + " 的")
    if mentions.genres:
        parts.append("、".join(genre_name(g) for g in mentions.genres) + "片")
    else:
        parts.append("影片")
    return "".join(parts)


def movie_line(movie, detail=False):
    """Describe one film for the model in a line."""
    year = f" ({movie.year})" if movie.year else ""
    parts = [f"《{display_title(movie.title)}》{year} [id {movie.id}]"]
    if movie.tags:
        parts.append("genres: " + ", ".join(movie.tag_list))
    if movie.director:
        parts.append(f"director: {movie.director}")
    if movie.actors:
        parts.append("cast: " + ", ".join(split_names(movie.actors)[:4]))
    if movie.score is not None:
        parts.append(f"rating {movie.score:.1f}/5 from {movie.rating_count} ratings")
    if detail and movie.summary:
        summary = movie.summary if len(movie.summary) <= 300 else movie.summary[:297]
        parts.append(f"summary: {summary}")
    return "- " + "; ".join(parts)


def filters_label(mentions):
    """Describe the genres, years and people of a question in English."""
    parts = []
    if mentions.genres:
        parts.append("genres " + " & ".join(mentions.genres))
    if mentions.year_range:
        start, end = mentions.year_range
        parts.append(f"released {start}" if start == end else f"released {start}-{end}")
    if mentions.directors or mentions.actors:
        parts.append("with " + ", ".join(mentions.directors + mentions.actors))
    return ", ".join(parts)


def context_text(grounding):
    """Return the catalogue context given to the model."""
    sections = []
    if grounding.named:
        lines = [movie_line(movie, detail=True) for movie in grounding.named]
        sections.append("Films named in the question:\n" + "\n".join(lines))
    for movie_id, movies in grounding.similar.items():
        if movies:
            name = next(m for m in grounding.named if m.id == movie_id).title
            lines = [movie_line(movie) for movie in movies]
            sections.append(
                f"Catalogue films most similar to {display_title(name)}:\n"
                + "\n".join(lines)
            )
    if grounding.fitting:
        label = filters_label(grounding.mentions)
        lines = [movie_line(movie) for movie in grounding.fitting]
        sections.append(
            f"Best-rated catalogue films ({label}), best first:\n" + "\n".join(lines)
        )
    profile = grounding.profile
    if profile:
        if profile.rated:
            lines = [
                f"{movie_line(movie)}; the user rated it {rating}/5"
                for movie, rating in profile.rated
            ]
            sections.append("This user's latest ratings:\n" + "\n".join(lines))
        if profile.viewed:
            lines = [movie_line(movie) for movie in profile.viewed]
            sections.append("Films this user viewed recently:\n" + "\n".join(lines))
        if profile.recommended:
            lines = [
                movie_line(movie) + (f"; why: {reason}" if reason else "")
                for movie, reason in profile.recommended
            ]
            sections.append(
                "Recommended for this user by the site:\n" + "\n".join(lines)
            )
    if grounding.popular:
        lines = [movie_line(movie) for movie in grounding.popular]
        sections.append(
            "No catalogue film matched the question; well-rated popular films:\n"
            + "\n".join(lines)
        )
    return "\n\n".join(sections)


def build_messages(grounding, question, history):
    """Return the chat messages: system prompt with context, history, question."""
    system = (
        SYSTEM_PROMPT
        + "\n\nCatalogue context:\n"
        + (context_text(grounding) or "(none)")
    )
    messages = [{"role": "system", "content": system}]
    messages += [{"role": t["role"], "content": t["content"]} for t in history]
    messages.append({"role": "user", "content": question})
    return messages


def reply_cards(index, grounding, reply):
    """Return the films a reply mentions (context films first), else the defaults."""
    context = {movie.id: movie for movie in grounding.films()}
    mentioned = index.find(reply, strict=True).movie_ids
    ordered = [movie_id for movie_id in mentioned if movie_id in context]
    others = [movie_id for movie_id in mentioned if movie_id not in context]
    movies = [context[movie_id] for movie_id in ordered]
    movies += load_movies(others)
    movies = movies[:MAX_CARDS] or grounding.default_cards()
    return [movie.to_dict() for movie in movies]


# --- offline answers ----------------------------------------------------------------


def short_line(position, movie, reason=None):
    year = f"({movie.year})" if movie.year else ""
    genres = "、".join(genre_name(tag) for tag in movie.tag_list)
    score = (
        f",评分 {movie.score:.1f}({movie.rating_count} 人评分)"
        if movie.score is not None
        else ""
    )
    why = f" — {reason}" if reason else ""
    return f"{position}. 《{display_title(movie.title)}》{year} {genres}{score}{why}"


def offline_answer(grounding):
    """Answer from the catalogue alone; return ``(reply, movies)``."""
    mentions = grounding.mentions
    lines = [OFFLINE_NOTICE, ""]
    cards = []
    if grounding.named:
        movie = grounding.named[0]
        neighbours = grounding.similar.get(movie.id, [])
        name = f"《{display_title(movie.title)}》"
        if not mentions.wants_similar:
            facts = [f"{name}({movie.year or '年份未知'})"]
            if movie.director:
                facts.append(f"导演:{movie.director}")
            if movie.actors:
                facts.append("主演:" + "、".join(split_names(movie.actors)[:4]))
            if movie.score is not None:
                facts.append(f"评分 {movie.score:.1f}({movie.rating_count} 人评分)")
            lines.append(",".join(facts) + "。")
            cards.append(movie)
        if neighbours:
            lines.append(f"与{name}相似的影片:")
            lines += [short_line(i, m) for i, m in enumerate(neighbours, 1)]
            cards += neighbours
        elif mentions.wants_similar:
            lines.append(f"片库中暂时找不到与{name}相似的影片。")
    elif grounding.fitting:
        if mentions.directors and not mentions.actors:
            heading = "、".join(mentions.directors) + " 执导的影片"
        elif mentions.actors and not mentions.directors:
            heading = "、".join(mentions.actors) + " 参演的影片"
        else:
            heading = describe_filters(mentions)
        lines.append(f"{heading}中评分最高的(按评分人数修正后的平均分排序):")
        lines += [short_line(i, m) for i, m in enumerate(grounding.fitting, 1)]
        cards = grounding.fitting
    elif not mentions.empty:
        lines.append("片库中没有找到符合条件的影片,换个说法试试?")
    elif grounding.profile and grounding.profile.recommended:
        lines.append("根据你的评分和浏览记录,为你推荐:")
        recommended = grounding.profile.recommended
        lines += [short_line(i, m, r) for i, (m, r) in enumerate(recommended, 1)]
        cards = [movie for movie, _ in recommended]
    else:
        lines.append("本站评分最高的热门影片:")
        lines += [short_line(i, m) for i, m in enumerate(grounding.popular, 1)]
        cards = grounding.popular
    cards = list({movie.id: movie for movie in cards}.values())[:MAX_CARDS]
    return "\n".join(lines), [movie.to_dict() for movie in cards]


# --- the provider -------------------------------------------------------------------


class ProviderError(Exception):
    """The chat provider failed; ``code`` says how, for the response and the log."""

    MESSAGES = {
        "llm_timeout": "AI 模型响应超时",
        "llm_unavailable": "AI 模型服务暂时不可用",
        "llm_auth_failed": "AI 模型服务认证失败",
        "llm_rate_limited": "AI 模型服务繁忙",
        "llm_error": "AI 模型服务返回了错误",
    }

    def __init__(self, code, cause, status=None):
        super().__init__(code)
        self.code = code
        self.cause = cause
        self.status = status

    @property
    def message(self):
        return self.MESSAGES[self.code]

    def body(self):
        """The 503 body: the apology as the reply, and the error."""
        return {
            "reply": APOLOGY,
            "movies": [],
            "error": {"code": self.code, "message": self.message},
        }


def provider_library():
    """Return the ``openai`` module, imported on first use.

    Importing it takes about a second, which a site answering offline (no
    LLM_API_KEY) never needs to pay; create_app imports it up front when a key is
    set, so gunicorn's preloaded workers share it.
    """
    import openai

    return openai


def is_provider_failure(exc):
    """Whether ``exc`` comes from the provider or the network (not our own bug)."""
    openai = sys.modules.get("openai")
    if openai is not None and isinstance(exc, openai.APIError):
        return True
    return isinstance(exc, ProviderError | httpx2.HTTPError)


def classify(exc):
    """Turn a provider or transport exception into a :class:`ProviderError`."""
    cause = exc.__class__.__name__
    if isinstance(exc, ProviderError):
        return exc
    openai = provider_library()
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return ProviderError("llm_timeout", cause)
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        return ProviderError("llm_unavailable", cause)
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        if status in (401, 403):
            return ProviderError("llm_auth_failed", cause, status)
        if status == 429:
            return ProviderError("llm_rate_limited", cause, status)
        if status >= 500:
            return ProviderError("llm_unavailable", cause, status)
        return ProviderError("llm_error", cause, status)
    return ProviderError("llm_error", cause)


def _retry_delay(exc, remaining):
    """Seconds to wait before the retry: Retry-After when given, capped."""
    delay = RETRY_DELAY
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    try:
        delay = float(headers.get("retry-after", delay))
    except ValueError:
        pass
    return max(0.0, min(delay, MAX_RETRY_DELAY, remaining - MIN_RETRY_BUDGET))


def create_completion(client, deadline, **kwargs):
    """Call the chat API before ``deadline`` (monotonic), retrying once on 429/5xx.

    Raises:
        ProviderError: the provider failed, timed out or refused.
    """
    openai = provider_library()
    for attempt in (1, 2):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ProviderError("llm_timeout", "deadline")
        try:
            return client.chat.completions.create(timeout=remaining, **kwargs)
        except openai.APIStatusError as exc:
            retryable = exc.status_code == 429 or exc.status_code >= 500
            remaining = deadline - time.monotonic()
            if attempt == 1 and retryable and remaining > MIN_RETRY_BUDGET:
                logger.warning(
                    "chat provider answered %d; retrying once", exc.status_code
                )
                time.sleep(_retry_delay(exc, remaining))
                continue
            raise classify(exc) from None
        except openai.APIError as exc:
            raise classify(exc) from None
        except ValueError as exc:
            # A 200 whose body is not JSON: a wrong LLM_BASE_URL serving a web page.
            raise ProviderError("llm_error", exc.__class__.__name__) from None
    raise ProviderError("llm_timeout", "deadline")  # pragma: no cover - loop exits


def completion_text(completion):
    """Return the reply text of a completion, or '' when it carries none."""
    choices = getattr(completion, "choices", None) or []
    message = getattr(choices[0], "message", None) if choices else None
    content = getattr(message, "content", None)
    return content.strip() if isinstance(content, str) else ""


def delta_text(chunk):
    """Return the text a streamed chunk adds, or ''."""
    if not chunk.choices:
        return ""
    return chunk.choices[0].delta.content or ""
