"""HTTP handlers for call recordings (gateway/recordings): upload a chunk, play, delete.

- ``POST /v1/sessions/{id}/recording?chunk=N[&start=ms]``: one chunk, ingest token (as the events route).
- ``GET /v1/recordings/{id}?exp=&sig=``: the whole recording (byte ranges too), by the signed link on the trace.
- ``DELETE /v1/sessions/{id}/recording``: the admin key (loopback only while none is set), for privacy requests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from gateway.api.http import JSONResponse, bearer_token, require_admin, service_of
from gateway.errors import BadRequest
from gateway.recordings.service import Recordings


def recordings_of(request: Request) -> Recordings:
    recordings: Recordings = request.app.state.recordings
    return recordings


async def _body(request: Request) -> AsyncIterator[bytes]:
    try:
        async for piece in request.stream():
            yield piece
    except ClientDisconnect:
        # The browser went away mid-chunk: nothing is stored, and it sends the chunk again if it comes back.
        raise BadRequest("the chunk's upload was cut short") from None


async def upload_chunk(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    service_of(request).signer.verify(bearer_token(request), session_id)
    declared = request.headers.get("content-length")
    status, answer = await recordings_of(request).upload(
        session_id,
        request.query_params.get("chunk"),
        request.query_params.get("start"),
        request.headers.get("content-type"),
        int(declared) if declared is not None and declared.isdigit() else None,
        _body(request),
    )
    return JSONResponse(answer, status_code=status)


async def play(request: Request) -> Response:
    session_id = request.path_params["session_id"]
    recordings = recordings_of(request)
    recordings.links.verify(session_id, request.query_params.get("exp"), request.query_params.get("sig"))
    range_header = request.headers.get("range")
    playback = await recordings.playback(session_id, range_header)
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(playback.end - playback.start),
               "Cache-Control": "private, max-age=3600"}
    status = 200
    if range_header and (playback.start, playback.end) != (0, playback.total):
        status = 206
        headers["Content-Range"] = f"bytes {playback.start}-{playback.end - 1}/{playback.total}"
    return StreamingResponse(recordings.stream(session_id, playback), status_code=status, headers=headers,
                             media_type=playback.media_type)


async def delete(request: Request) -> Response:
    require_admin(request, "deleting a recording")
    session_id = request.path_params["session_id"]
    deleted = await recordings_of(request).delete(session_id)
    return JSONResponse({"session_id": session_id, "deleted_chunks": deleted})


routes = [
    Route("/v1/sessions/{session_id}/recording", upload_chunk, methods=["POST"]),
    Route("/v1/sessions/{session_id}/recording", delete, methods=["DELETE"]),
    Route("/v1/recordings/{session_id}", play, methods=["GET"]),
]
