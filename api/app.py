"""The HTTP API (FastAPI), mounted under `/api` by server.py on the same port as the UI.

As thin as a page: read the request, call a core service with the token's actor, serialise the
answer. Permissions, clinic scope, approval rules and audit are the services'. Errors are RFC 9457
`application/problem+json`; lists are cursor pages; background work answers 202 with a `Location`.
"""

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Form, Query, Request, Response, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.idempotency import IdempotentPosts
from api.schemas import (
    ComparisonIn,
    Export,
    ExportIn,
    FrameOut,
    FramePage,
    ImportOut,
    Problem,
    Simulation,
    SimulationDetail,
    SimulationPage,
    SnapshotIn,
    VideoIn,
)
from core.domain import ExportState, ExportType, ImportSource, SimulationExport, SimulationType
from core.errors import (
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    ServiceUnavailableError,
    StudioError,
    ValidationError,
)
from core.imaging.compose import ComparisonSpec
from core.permissions import Actor
from core.services import Services
from core.services.exports import URL_FIELDS, RenderRequest
from core.services.imports import Upload
from core.services.visuals import BeforeRef, ComparisonRequest, OutputSpec, Overlays, SnapshotSpec

PROBLEM = "application/problem+json"
_ERRORS = {400: "Bad request", 401: "Not signed in", 403: "Forbidden", 404: "Not found", 409: "Conflict",
           413: "Upload too large", 422: "Invalid request", 429: "Too many requests",
           503: "Service unavailable"}
#: Every operation documents these (schemathesis checks that no undocumented status appears).
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {code: {"model": Problem, "description": title}
                                                    for code, title in _ERRORS.items()}


class ApiError(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, headers or {}


def problem(status: int, detail: str, *, instance: str | None = None,
            headers: dict[str, str] | None = None) -> JSONResponse:
    body = Problem(title=_ERRORS.get(status, "Error"), status=status, detail=detail, instance=instance)
    return JSONResponse(body.model_dump(exclude_none=True), status_code=status, media_type=PROBLEM,
                        headers={"Cache-Control": "no-store", **(headers or {})})


def _status_of(exc: StudioError) -> int:
    if isinstance(exc, PermissionDeniedError):
        return 403
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, ConflictError):
        return 409
    if isinstance(exc, ValidationError):
        return 422
    if isinstance(exc, ServiceUnavailableError):
        return 503
    return 400


def current_actor(request: Request) -> Actor:
    """The token's actor (401 without a live token; 429 past the token's rate)."""
    services: Services = request.app.state.services()
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "Send an API token: 'Authorization: Bearer tss_…' (an admin makes one on the "
                            "Users page).", {"WWW-Authenticate": "Bearer"})
    try:
        actor = services.api_tokens.authenticate(token.strip())
    except PermissionDeniedError as exc:
        raise ApiError(401, str(exc), {"WWW-Authenticate": 'Bearer error="invalid_token"'}) from exc
    request.state.actor = actor
    verdict = services.api_tokens.check_rate(actor.token_id or "")
    if not verdict.allowed:
        raise ApiError(429, f"This token made more than {services.infra.settings.api_rate_per_minute} requests "
                            "this minute; wait and retry.", {"Retry-After": str(verdict.retry_after)})
    return actor


Caller = Annotated[Actor, Depends(current_actor)]


def create_api(services: Callable[[], Services]) -> FastAPI:
    """The API app. `services()` returns the process's services (built on first use)."""
    app = FastAPI(
        title="Treatment Simulation Studio API",
        version="1.0.0",
        description=(
            "Simulations of orthodontic treatments for the systems that consume them. Authenticate with an API "
            "token an admin made on the Users page: `Authorization: Bearer tss_…`.\n\n"
            "`GET /imaging/simulations/{id}` follows the product spec, where the same path serves "
            "`:patientId` and `:id`: a **patient id lists** that patient's versions (`kind: list`), a "
            "**simulation id returns the version** (`kind: simulation`). "
            "`GET /imaging/patients/{patientId}/simulations` is the unambiguous list."),
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
        responses=ERROR_RESPONSES,
    )
    app.state.services = services

    @app.exception_handler(StudioError)
    async def studio_error(request: Request, exc: StudioError) -> JSONResponse:
        return problem(_status_of(exc), str(exc), instance=request.url.path)

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return problem(exc.status, exc.detail, instance=request.url.path, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        parts = []
        for error in exc.errors()[:5]:
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
            parts.append(f"{where}: {error.get('msg', 'invalid')}")
        return problem(422, "; ".join(parts) or "The request is not valid.", instance=request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), instance=request.url.path,
                       headers=dict(exc.headers or {}))

    def links(actor: Actor, export: SimulationExport) -> dict[str, str]:
        if export.state is not ExportState.DONE or not export.asset_id:
            return {}
        link = services().sessions.token_download_link(actor, export.asset_id)
        return {URL_FIELDS[export.exportType]: link}

    def export_out(actor: Actor, export: SimulationExport) -> Export:
        return Export.of(export, links(actor, export))

    def accepted(response: Response, export: SimulationExport, actor: Actor) -> Export:
        response.status_code = 201 if export.state is ExportState.DONE else 202
        response.headers["Location"] = f"/api/imaging/exports/{export.id}"
        return export_out(actor, export)

    # --- reading ------------------------------------------------------------------------------------------
    @app.get("/imaging/simulations/{id}", response_model=SimulationDetail | SimulationPage,
             summary="Simulation details (a simulation id) or a patient's simulations (a patient id)")
    def get_simulation_or_list(id: str, actor: Caller, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                               cursor: Annotated[str | None, Query(max_length=200)] = None
                               ) -> SimulationDetail | SimulationPage:
        sim = services().simulations.find(actor, id)
        if sim is not None:
            return SimulationDetail(**Simulation.of(sim).model_dump())
        return list_page(actor, id, limit, cursor)

    def list_page(actor: Actor, patient_id: str, limit: int, cursor: str | None) -> SimulationPage:
        page = services().simulations.list_for_patient(actor, patient_id, limit=limit, cursor=cursor)
        return SimulationPage(items=[Simulation.of(s) for s in page], nextCursor=page.cursor)

    @app.get("/imaging/patients/{patientId}/simulations", response_model=SimulationPage,
             summary="A patient's simulation versions, newest first (a page)")
    def list_simulations(patientId: str, actor: Caller, limit: Annotated[int, Query(ge=1, le=200)] = 50,
                         cursor: Annotated[str | None, Query(max_length=200)] = None) -> SimulationPage:
        return list_page(actor, patientId, limit, cursor)

    @app.get("/imaging/simulations/{id}/frames", response_model=FramePage,
             summary="The version's frames with download links (a page)")
    def frames(id: str, actor: Caller, limit: Annotated[int, Query(ge=1, le=500)] = 100,
               cursor: Annotated[str | None, Query(max_length=200)] = None) -> FramePage:
        sim, page = services().simulations.frames_page(actor, id, limit=limit, cursor=cursor)
        link = services().sessions.token_download_link
        items = [FrameOut.of(f, link(actor, f.assetId), link(actor, f.thumbAssetId) if f.thumbAssetId else None)
                 for f in page]
        return FramePage(simulationId=sim.id, items=items, nextCursor=page.cursor)

    @app.get("/imaging/exports/{id}", response_model=Export, summary="An export's state and, when done, its file")
    def get_export(id: str, actor: Caller) -> Export:
        return export_out(actor, services().exports.get(actor, id))

    @app.get("/imaging/imports/{id}", response_model=ImportOut, summary="An import's state and its new version")
    def get_import(id: str, actor: Caller) -> ImportOut:
        return ImportOut.of(services().imports.get(actor, id))

    # --- background work (202 + Location) ----------------------------------------------------------------
    @app.post("/imaging/simulations/{id}/export", response_model=Export, status_code=202,
              responses={201: {"model": Export, "description": "An identical export is already done"}},
              summary="Export the version's assets (frames ZIP, GIF or print PDF) in the background")
    def export_assets(id: str, actor: Caller, response: Response, body: ExportIn | None = None) -> Export:
        body = body or ExportIn()
        kind = {"zip": ExportType.ASSETS, "gif": ExportType.GIF, "pdf": ExportType.PDF}[body.format]
        request = RenderRequest(kind, view=body.view, first_stage=body.firstStage, last_stage=body.lastStage)
        return accepted(response, services().exports.request(actor, id, request), actor)

    @app.post("/imaging/simulations/{id}/video", response_model=Export, status_code=202,
              responses={201: {"model": Export, "description": "An identical video is already done"}},
              summary="Render a video of the version in the background")
    def video(id: str, actor: Caller, response: Response, body: VideoIn | None = None) -> Export:
        body = body or VideoIn()
        request = RenderRequest(ExportType.VIDEO, view=body.view, first_stage=body.firstStage,
                                last_stage=body.lastStage, preset=body.preset, fps=body.fps,
                                seconds_per_stage=body.secondsPerStage, codec=body.codec, title_card=body.titleCard,
                                end_card=body.endCard)
        return accepted(response, services().exports.request(actor, id, request), actor)

    # --- made at once (201) ----------------------------------------------------------------------------------
    def overlays(body: SnapshotIn | ComparisonIn) -> Overlays:
        o = body.overlays
        return Overlays(stage_label=o.stageLabel, date=o.date, clinic=o.clinic, patient=o.patient)

    def output(body: SnapshotIn | ComparisonIn) -> OutputSpec:
        return OutputSpec(size=body.output.size, orientation=body.output.orientation, fmt=body.output.format)

    @app.post("/imaging/simulations/{id}/snapshot", response_model=Export, status_code=201,
              summary="A snapshot image of one frame, with captions and stamps")
    def snapshot(id: str, actor: Caller, response: Response, body: SnapshotIn | None = None) -> Export:
        body = body or SnapshotIn()
        result = services().visuals.export_snapshot(actor, id, SnapshotSpec(body.frameIndex, output(body),
                                                                           overlays(body)))
        response.headers["Location"] = f"/api/imaging/exports/{result.export.id}"
        return export_out(actor, result.export)

    @app.post("/imaging/simulations/{id}/comparison", response_model=Export, status_code=201,
              summary="A before/predicted comparison image")
    def comparison(id: str, actor: Caller, response: Response, body: ComparisonIn) -> Export:
        before = BeforeRef(asset_id=body.beforeAssetId, frame_index=body.beforeFrameIndex)
        request = ComparisonRequest(before=before, predicted=tuple(body.predicted),
                                    layout=ComparisonSpec(layout=body.layout), output=output(body),
                                    overlays=overlays(body))
        result = services().visuals.export_comparison(actor, id, request)
        response.headers["Location"] = f"/api/imaging/exports/{result.export.id}"
        return export_out(actor, result.export)

    # --- imports ----------------------------------------------------------------------------------------------
    @app.post("/imaging/simulations/import", response_model=ImportOut, status_code=202,
              summary="Import a simulation (images, ZIP, screen recording, iTero ZIP or staged meshes)")
    def import_simulation(
        *, actor: Caller, response: Response,
        files: Annotated[list[UploadFile], File(description="The export's files")],
        patientId: Annotated[str, Form(pattern=r"^[0-9a-f]{24}$")],
        name: Annotated[str, Form(min_length=1, max_length=200)],
        source: Annotated[str, Form(description="files | recording | itero | staged-3d")] = "files",
        simulationType: Annotated[str, Form()] = "ALIGNER",
        treatmentId: Annotated[str | None, Form(pattern=r"^[0-9a-f]{24}$")] = None,
        views: Annotated[str | None, Form(max_length=200, description="staged-3d: the views to render, "
                                                                        "comma-separated (e.g. front,upper)")] = None,
    ) -> ImportOut:
        uploads = [Upload(f.filename or "upload", f.file.read()) for f in files]
        options: dict[str, Any] = {"autoConfirm": True}
        if views:
            options["views"] = [v.strip() for v in views.split(",") if v.strip()]
        record = services().imports.start(
            actor, source=ImportSource.coerce(source), uploads=uploads, patient_id=patientId,
            treatment_id=treatmentId, simulation_type=SimulationType.coerce(simulationType), name=name,
            options=options)
        response.headers["Location"] = f"/api/imaging/imports/{record.id}"
        return ImportOut.of(record)

    app.openapi = _problem_openapi(app)  # type: ignore[method-assign]
    app.add_middleware(IdempotentPosts, services=services)  # inner: runs after the size check below
    app.add_middleware(CallRecorder, services=services)
    return app


class ApiPathGuard:
    """Outer middleware (server.py): `/api/…` paths with control characters (a decoded `%0A` in an id)
    never match the `/api` mount, so Streamlit would answer a plain-text 404; answer the API's own
    problem+json 404 instead."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if path.startswith("/api/") and any(ord(c) < 0x20 or ord(c) == 0x7F for c in path):
            await problem(404, "No record with that id in your clinic.")(scope, receive, send)
            return
        await self.app(scope, receive, send)


class _TooLarge(Exception):
    pass


class CallRecorder:
    """Audits every authenticated call (token id, method, route template, status) once it is answered,
    and refuses request bodies above the upload limit before they are read (413)."""

    def __init__(self, app: ASGIApp, services: Callable[[], Services]) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.services().infra.settings.api_max_upload_mb * 2**20
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await problem(413, f"The request is larger than {limit // 2**20} MB; import in parts or ask for a "
                               "higher API_MAX_UPLOAD_MB.")(scope, receive, send)
            return
        status = {"code": 500}
        received = {"bytes": 0}

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                received["bytes"] += len(message.get("body", b""))
                if received["bytes"] > limit:
                    raise _TooLarge
            return message

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, counting_receive, recording_send)
        except _TooLarge:  # a body without Content-Length that grew past the limit
            status["code"] = 413
            await problem(413, f"The request is larger than {limit // 2**20} MB.")(scope, receive, send)
        finally:
            actor = (scope.get("state") or {}).get("actor")
            if actor is not None:
                route = getattr(scope.get("route"), "path", "?")
                simulation_id = (scope.get("path_params") or {}).get("id") if "/simulations/{id}" in route else None
                self.services().api_tokens.record_call(actor, method=scope["method"], route=route,
                                                       status=status["code"],
                                                       simulation_id=_oid_or_none(simulation_id))


def _oid_or_none(value: str | None) -> str | None:
    return value if value and len(value) == 24 and all(c in "0123456789abcdef" for c in value) else None


def _problem_openapi(app: FastAPI) -> Callable[[], dict[str, Any]]:
    """The generated document, with every error answer described as `application/problem+json`."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        for path in schema.get("paths", {}).values():
            for operation in path.values():
                for code, answer in operation.get("responses", {}).items():
                    if code.isdigit() and int(code) >= 400:
                        answer["content"] = {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}}
        for unused in ("HTTPValidationError", "ValidationError"):
            schema.get("components", {}).get("schemas", {}).pop(unused, None)
        key = {"name": "Idempotency-Key", "in": "header", "required": False,
               "description": "Same key and same request: the first answer again. Same key, other request: 409.",
               "schema": {"type": "string", "minLength": 1, "maxLength": 200}}
        for path in schema.get("paths", {}).values():
            if "post" in path:
                path["post"].setdefault("parameters", []).append(key)
        schema.setdefault("components", {})["securitySchemes"] = {
            "bearer": {"type": "http", "scheme": "bearer", "description": "An API token (tss_…) from the Users page."}}
        schema["security"] = [{"bearer": []}]
        app.openapi_schema = schema
        return schema

    return openapi
