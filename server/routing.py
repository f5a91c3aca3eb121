"""The route class of every API router: a JSON body is measured for nesting before anything
parses it (``latlab.untrusted.check_json_depth``), so a document nested 100,000 deep is a 422
naming the bound, not a ``RecursionError`` in the parser or a validator."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from latlab.server.errors import InvalidInput
from latlab.untrusted import check_json_depth

__all__ = ["BoundedJsonRoute", "api_router"]


def _is_json(request: Request) -> bool:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return content_type in ("", "application/json") or content_type.endswith("+json")


class BoundedJsonRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def bounded(request: Request) -> Response:
            if request.method in ("POST", "PUT", "PATCH") and _is_json(request):
                body = await request.body()  # kept on the request: the handler reuses it
                if body:
                    check_json_depth(body)
                    try:
                        await request.json()  # parsed once, kept for the handler too
                    except json.JSONDecodeError:
                        pass  # FastAPI's own answer: a 422 saying where
                    except ValueError as exc:  # an integer too long to convert, ...
                        raise InvalidInput(f"body: not valid JSON ({exc})") from None
            return await handler(request)

        return bounded


def api_router(**kwargs: Any) -> APIRouter:
    """An ``APIRouter`` whose routes are ``BoundedJsonRoute``s."""
    return APIRouter(route_class=BoundedJsonRoute, **kwargs)
