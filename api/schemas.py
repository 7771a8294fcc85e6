"""Request and response schemas: validation and the OpenAPI document.

Request schemas use marshmallow's default ``unknown=RAISE``: a JSON body with a field
the schema does not name is refused with 422. Query strings ignore unknown parameters
(webargs' default), so cache-busting parameters do not break a request.
Response schemas only document the answers; views build the JSON themselves.
"""

import marshmallow as ma
from marshmallow import fields, validate

USERNAME_PATTERN = r"^[A-Za-z0-9_\u4e00-\u9fff]{3,32}\Z"
SORTS = ("popular", "score", "newest", "title")


class StrictInteger(fields.Integer):
    """An integer that refuses strings, floats and booleans."""

    def __init__(self, **kwargs):
        super().__init__(strict=True, **kwargs)

    def _validated(self, value):
        if isinstance(value, bool):
            raise self.make_error("invalid", input=value)
        return super()._validated(value)


class NoComma(validate.Validator):
    error = "Must not contain a comma."

    def __call__(self, value):
        if "," in value:
            raise ma.ValidationError(self.error)
        return value


def not_blank(value):
    if not value.strip():
        raise ma.ValidationError("Must not be blank.")


# Errors ---------------------------------------------------------------------------


class ErrorBodySchema(ma.Schema):
    code = fields.String(metadata={"description": "Stable English error code"})
    message = fields.String(metadata={"description": "Message for people (Chinese)"})
    details = fields.Raw(metadata={"description": "Field errors, when validating"})


class ErrorSchema(ma.Schema):
    error = fields.Nested(ErrorBodySchema)


# Auth -----------------------------------------------------------------------------


class RegisterSchema(ma.Schema):
    username = fields.String(
        required=True,
        validate=validate.Regexp(
            USERNAME_PATTERN,
            error="3-32 letters, digits, underscores or Chinese characters.",
        ),
    )
    password = fields.String(required=True, validate=validate.Length(8, 128))


class LoginSchema(ma.Schema):
    username = fields.String(required=True, validate=validate.Length(1, 64))
    password = fields.String(required=True, validate=validate.Length(1, 128))
    role = fields.String(
        load_default="client", validate=validate.OneOf(("client", "admin"))
    )


class PasswordChangeSchema(ma.Schema):
    old_password = fields.String(required=True, validate=validate.Length(1, 128))
    new_password = fields.String(required=True, validate=validate.Length(8, 128))


class AccountSchema(ma.Schema):
    id = fields.Integer()
    username = fields.String()
    source = fields.String()
    created_at = fields.String()
    last_login_at = fields.String(allow_none=True)
    is_active = fields.Boolean()


class NewAccountSchema(ma.Schema):
    id = fields.Integer()
    username = fields.String()


class LoginResultSchema(ma.Schema):
    msg = fields.String()
    role = fields.String()
    user = fields.Nested(AccountSchema)


class MessageSchema(ma.Schema):
    msg = fields.String()


# Films ----------------------------------------------------------------------------


class MovieSchema(ma.Schema):
    id = fields.Integer()
    title = fields.String()
    tags = fields.List(fields.String())
    director = fields.String(allow_none=True)
    actors = fields.String(allow_none=True)
    summary = fields.String(allow_none=True)
    score = fields.Float(allow_none=True)
    rating_count = fields.Integer()
    click_count = fields.Integer()
    release_date = fields.String(allow_none=True)
    year = fields.Integer(allow_none=True)
    imdb_id = fields.String(allow_none=True)
    imdb_url = fields.String(allow_none=True)
    poster_url = fields.String(allow_none=True)
    poster = fields.String(metadata={"description": "Poster URL on this site"})


class RecommendedMovieSchema(MovieSchema):
    reason = fields.String(metadata={"description": "Why this film is suggested"})


class HomeSchema(ma.Schema):
    recs = fields.List(fields.Nested(RecommendedMovieSchema))


class MovieDetailSchema(MovieSchema):
    related = fields.List(fields.Nested(RecommendedMovieSchema))
    my_rating = fields.Integer(
        allow_none=True, metadata={"description": "The client's rating, if any"}
    )


class PageQuerySchema(ma.Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100000))
    per_page = fields.Integer(load_default=20, validate=validate.Range(1, 100))


class MovieQuerySchema(PageQuerySchema):
    q = fields.String(validate=validate.Length(max=100))
    tag = fields.String(validate=validate.Length(max=32))
    year_from = fields.Integer(validate=validate.Range(1800, 2100))
    year_to = fields.Integer(validate=validate.Range(1800, 2100))
    sort = fields.String(load_default="popular", validate=validate.OneOf(SORTS))


class MoviePageSchema(ma.Schema):
    items = fields.List(fields.Nested(MovieSchema))
    total = fields.Integer()
    page = fields.Integer()
    per_page = fields.Integer()


class TagCountSchema(ma.Schema):
    tag = fields.String()
    count = fields.Integer()


class RatingInputSchema(ma.Schema):
    rating = StrictInteger(required=True, validate=validate.Range(1, 5))


class RatingResultSchema(ma.Schema):
    movie_id = fields.Integer()
    rating = fields.Integer(allow_none=True)
    rated_at = fields.String(allow_none=True)
    created = fields.Boolean()
    score = fields.Float(allow_none=True)
    rating_count = fields.Integer()


class MyRatingSchema(ma.Schema):
    movie = fields.Nested(MovieSchema)
    rating = fields.Integer()
    rated_at = fields.String()


class MyRatingPageSchema(MoviePageSchema):
    items = fields.List(fields.Nested(MyRatingSchema))


class HistoryItemSchema(ma.Schema):
    movie = fields.Nested(MovieSchema)
    viewed_at = fields.String()
    views = fields.Integer()


class HistoryPageSchema(MoviePageSchema):
    items = fields.List(fields.Nested(HistoryItemSchema))


class DeletedSchema(ma.Schema):
    deleted = fields.Integer()
    rescored_movies = fields.Integer(metadata={"description": "Films rescored"})


# Admin ----------------------------------------------------------------------------


class ClientQuerySchema(PageQuerySchema):
    q = fields.String(validate=validate.Length(max=64))
    source = fields.String(validate=validate.OneOf(("registered", "movielens")))


class AdminClientSchema(AccountSchema):
    rating_count = fields.Integer()
    footprint_count = fields.Integer()


class ClientPageSchema(MoviePageSchema):
    items = fields.List(fields.Nested(AdminClientSchema))


class ClientPatchSchema(ma.Schema):
    is_active = fields.Boolean(
        required=True, truthy={True}, falsy={False}, allow_none=False
    )


class TemporaryPasswordSchema(ma.Schema):
    id = fields.Integer()
    username = fields.String()
    temporary_password = fields.String(
        metadata={"description": "Shown once; only its hash is stored"}
    )


class MovieWriteSchema(ma.Schema):
    """Writable film fields; score, rating_count and click_count are derived."""

    title = fields.String(required=True, validate=[validate.Length(1, 255), not_blank])
    tags = fields.List(
        fields.String(validate=[validate.Length(1, 32), NoComma(), not_blank]),
        validate=validate.Length(max=19),
    )
    director = fields.String(allow_none=True, validate=validate.Length(max=255))
    actors = fields.String(allow_none=True, validate=validate.Length(max=1024))
    summary = fields.String(allow_none=True, validate=validate.Length(max=20000))
    release_date = fields.Date(allow_none=True)
    imdb_id = fields.String(allow_none=True, validate=validate.Length(max=16))
    imdb_url = fields.URL(allow_none=True, validate=validate.Length(max=512))
    poster_url = fields.URL(allow_none=True, validate=validate.Length(max=512))


class MovieUpdateSchema(MovieWriteSchema):
    """The same fields, each optional; a title, when given, must not be blank."""

    title = fields.String(validate=[validate.Length(1, 255), not_blank])


class StatsSchema(ma.Schema):
    movie_count = fields.Integer()
    client_count = fields.Integer()
    dataset_user_count = fields.Integer()
    total_clicks = fields.Integer()
    rating_count = fields.Integer()
    model_loaded = fields.Boolean()
    rmse = fields.Float(allow_none=True)
    mae = fields.Float(allow_none=True)
    within_one_star = fields.Float(allow_none=True)
    precision_at_10 = fields.Float(allow_none=True)
    ndcg_at_10 = fields.Float(allow_none=True)
    coverage = fields.Float(allow_none=True)
    eval_date = fields.String(allow_none=True)


class ChartsSchema(ma.Schema):
    ratings_histogram = fields.List(fields.Dict())
    movies_per_tag = fields.List(fields.Dict())
    clicks_per_tag = fields.List(fields.Dict())
    top_clicked = fields.List(fields.Dict())
    registrations = fields.List(fields.Dict())


class ModelStateSchema(ma.Schema):
    state = fields.String(metadata={"description": "idle, running, done or failed"})
    progress = fields.Float(allow_none=True)
    message = fields.String(allow_none=True)
    started_at = fields.String(allow_none=True)
    finished_at = fields.String(allow_none=True)
    last_error = fields.String(allow_none=True)
    model = fields.Dict()
    metrics = fields.Dict(allow_none=True)
