"""The HTTP face of the ranking service (FastAPI; OpenAPI at /openapi.json and /docs).

    POST /v1/rank       user, optional query, candidates, k -> ranked candidates, model, step
    POST /v1/recommend  user, optional query, k -> the pool's items ranked for the user
    GET  /v1/users/{user}/history   the history rankings use (off unless enabled)
    GET  /health  liveness (never needs the token)     GET /ready  model and history loaded
    GET  /metrics Prometheus                            GET /       inspection page (off unless enabled)

Bad requests are 422 with one entry per problem, {"field", "reason"}: unknown fields, wrong
types (exact, as event v1: `true` is not an id), too many candidates, an oversized query.
With a token set, every path but /health needs `Authorization: Bearer <token>` (the page
also takes `?token=`, a browser cannot add a header to a link).
"""

import secrets
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, StringConstraints

from ops.settings import ServeSettings
from stream.contract.events import MAX_ID_CHARS, MAX_QUERY_CHARS, MAX_QUERY_WORDS
from stream.contract.history import History, RecBehaviour
from stream.serve.request_ids import Refusal, item_ids, user_and_query
from stream.serve.service import NotReady, RankingService

PAGE = Path(__file__).with_name("page.html")
OPEN_PATHS = frozenset({"/health"})
ENDPOINTS = {"/v1/rank": "rank", "/v1/recommend": "recommend"}

RawId = Annotated[StrictStr, StringConstraints(min_length=1, max_length=MAX_ID_CHARS)] | \
    Annotated[StrictInt, Field(ge=-(2**63), lt=2**64)]
RawQuery = Annotated[StrictStr, StringConstraints(min_length=1, max_length=MAX_QUERY_CHARS)] | \
    Annotated[list[RawId], Field(min_length=1, max_length=MAX_QUERY_WORDS)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Scored(BaseModel):
    item: StrictStr | StrictInt = Field(description="the item id as the request (or, for the pool, the events) named it")
    score: float = Field(description="the model's score (a logit; higher ranks first)")


class RankingOut(BaseModel):
    items: list[Scored]
    model: str = Field(description="the model (of the zoo) that ranked them")
    step: int = Field(description="its training step: which checkpoint ranked them")
    history: dict[str, int] = Field(description="how many rec and search behaviours of the user the ranking used")


class RecommendOut(RankingOut):
    pool: int = Field(description="items in the candidate pool (recently popular items)")


class Gate:
    """Every request passes here first (plain ASGI: cheaper than an HTTP middleware): with a
    token set, a request without it is answered 401 before any routing; the latency of the
    ranking endpoints is measured from here, whatever the outcome."""

    def __init__(self, app, token: str | None, metrics) -> None:
        self.app, self.token, self.metrics = app, token.encode() if token else None, metrics

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, path = time.perf_counter(), scope["path"]
        endpoint = _endpoint(path)
        if self.token and path not in OPEN_PATHS and not self._authorized(scope):
            if endpoint:
                self.metrics.requests.labels(endpoint, "unauthorized").inc()
            refusal = JSONResponse({"detail": "a bearer token is required (Authorization: Bearer <token>)"},
                                   status_code=401, headers={"WWW-Authenticate": "Bearer"})
            await refusal(scope, receive, send)
        else:
            await self.app(scope, receive, send)
        if endpoint:
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)

    def _authorized(self, scope) -> bool:
        given = dict(scope["headers"]).get(b"authorization", b"")
        given = given[7:] if given[:7].lower() == b"bearer " else b""
        if not given and scope["path"] == "/":  # the page, opened from a link
            given = parse_qs(scope.get("query_string", b"").decode()).get("token", [""])[0].encode()
        return secrets.compare_digest(given, self.token)


def _refused(problems: list[tuple[str, str]]) -> JSONResponse:
    return JSONResponse({"detail": [{"field": f, "reason": r} for f, r in problems]}, status_code=422)


def create_app(service: RankingService, settings: ServeSettings) -> FastAPI:
    """The app around `service`; its lifespan starts and stops the service's loops."""
    metrics = service.metrics

    class Ask(Strict):
        user: RawId = Field(description="the user id, as in the events (text or integer)")
        query: RawQuery | None = Field(None, description="text (as typed) or a list of word ids, as event v1; "
                                       "absent: the recommendation task")
        k: StrictInt = Field(10, ge=1, le=settings.max_candidates, description="how many to return")

    class RecommendIn(Ask):
        include_seen: StrictBool = Field(False, description="keep items the user already clicked (in the "
                                         "history the service holds); by default they are left out")

    class RankIn(Ask):
        candidates: list[RawId] = Field(min_length=1, max_length=settings.max_candidates,
                                        description="item ids to rank (unknown ones score as cold items)")

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="unisar serve", version="1", lifespan=lifespan,
                  description="Rankings for search and recommendation from the newest UniSAR checkpoint and "
                              "each user's freshest history.")

    app.add_middleware(Gate, token=settings.serve_token, metrics=metrics)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        endpoint = _endpoint(request.url.path)
        if endpoint:
            metrics.requests.labels(endpoint, "bad_request").inc()
        reasons: dict[str, list[str]] = {}  # a union fails once per branch: one entry per field
        for e in exc.errors():
            field = _field(e["loc"])
            reason = "unknown field" if e["type"] == "extra_forbidden" else e["msg"]
            if reason not in reasons.setdefault(field, []):
                reasons[field].append(reason)
        problems = [(field, " or ".join(r)) for field, r in reasons.items()]
        return _refused(problems)

    async def ranked(endpoint: str, body: Ask, candidates: list | None):
        ids = user_and_query(body.user, body.query)
        if isinstance(ids, Refusal):
            metrics.requests.labels(endpoint, "bad_request").inc()
            return _refused([(ids.field, ids.reason)])
        user, words = ids
        try:
            if candidates is None:
                items, ranking = await service.recommend(user, words, body.k, body.include_seen)
                names = [service.pool.name(int(i)) for i in items]
            else:
                ranking = await service.rank(user, words, item_ids(candidates), body.k)
                names = candidates
        except NotReady as exc:
            metrics.requests.labels(endpoint, "not_ready").inc()
            return JSONResponse({"detail": str(exc)}, status_code=503)
        except Exception:
            metrics.requests.labels(endpoint, "error").inc()
            raise
        if ranking is None:  # an empty pool: nothing to rank
            current, history = service.holder.current, service.history(user)
            out = {"items": [], "model": current.model_name, "step": current.step}
        else:
            history = ranking.history
            out = {"items": [{"item": names[i], "score": float(ranking.scores[i])} for i in ranking.order],
                   "model": ranking.model_name, "step": ranking.step}
        out["history"] = {"rec": len(history.rec), "search": len(history.search)}
        if candidates is None:
            out["pool"] = len(service.pool)
        metrics.requests.labels(endpoint, "ok").inc()
        return out

    @app.post("/v1/rank", response_model=RankingOut, responses={422: {"description": "a bad request"}})
    async def rank(body: RankIn):
        """Rank the given candidates for the user (and the query, if any), best first, top k."""
        return await ranked("rank", body, body.candidates)

    @app.post("/v1/recommend", response_model=RecommendOut)
    async def recommend(body: RecommendIn):
        """The top k of the service's candidate pool (recently popular items) for the user, without
        the items the user already clicked unless `include_seen`. The pool is the retrieval stage
        a larger system would replace with its own."""
        return await ranked("recommend", body, None)

    @app.get("/v1/users/{user}/history")
    async def history(user: Annotated[str, Field(min_length=1, max_length=MAX_ID_CHARS)]):
        """The user's history as the rankings use it, oldest first, with the transition into each
        behaviour (rec->rec, search->rec, rec->search, search->search). Off unless enabled."""
        if not settings.history_endpoint:
            return JSONResponse({"detail": "the history endpoint is off (--history-endpoint true)"},
                                status_code=404)
        ids = user_and_query(user, None)
        if isinstance(ids, Refusal):
            metrics.requests.labels("history", "bad_request").inc()
            return _refused([(ids.field, ids.reason)])
        metrics.requests.labels("history", "ok").inc()
        return {"user": user, "timeline": timeline(service.history(ids[0]), service.pool.name)}

    @app.get("/health")
    async def health():
        return {"status": "ok"}

    @app.get("/ready")
    async def ready():
        current = service.holder.current
        body = {"ready": service.ready, "history_view": service.view.ready,
                "model": current.model_name if current else None, "step": current.step if current else None}
        return JSONResponse(body, status_code=200 if service.ready else 503)

    @app.get("/metrics")
    async def prometheus():
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        if not settings.inspect_page:
            return JSONResponse({"detail": "the inspection page is off (--inspect-page true)"}, status_code=404)
        return HTMLResponse(PAGE.read_text())

    return app


def _field(loc: tuple) -> str:
    """`candidates.3` from pydantic's ("body", "candidates", 3, "constrained-str"): the source
    and the names of union branches dropped."""
    parts = list(loc[1:] if loc and loc[0] in ("body", "path", "query") else loc)
    while parts and isinstance(parts[-1], str) and (parts[-1] in ("str", "int") or "-" in parts[-1]
                                                    or "[" in parts[-1]):
        parts.pop()
    return ".".join(map(str, parts)) or "body"


def _endpoint(path: str) -> str | None:
    if path.startswith("/v1/users/"):
        return "history"
    return ENDPOINTS.get(path)


def timeline(history: History, name=lambda item: None) -> list[dict]:
    """The behaviours in time order, each with the transition that led to it."""
    out, before = [], None
    for b in history.mixed():
        kind = "rec" if isinstance(b, RecBehaviour) else "search"
        entry: dict = {"ts": b.ts, "type": kind, "transition": f"{before}->{kind}" if before else None}
        if kind == "rec":
            entry |= {"item": str(b.item), "name": name(b.item)}
        else:
            entry |= {"query_words": len(b.query), "clicks": [{"item": str(i), "name": name(i)} for i in b.clicks]}
        out.append(entry)
        before = kind
    return out
