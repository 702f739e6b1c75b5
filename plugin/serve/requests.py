"""Parsing a search request: JSON (media as base64) or multipart/form-data (files as they are)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from mmalign.connectors.errors import ConfigError
from mmalign.plugin.serve.errors import bad_request
from mmalign.plugin.serve.http import as_list, validation_message
from mmalign.plugin.serve.limits import form_number, loads_limited
from mmalign.plugin.serve.models import SearchRequest
from mmalign.plugin.serve.uploads import Upload, decode_base64
from mmalign.plugin.serve.validation import SearchQuery
from mmalign.schemas.vocabulary import SEARCH_FUSIONS, SEARCH_TARGETS

FORM_FIELDS = ("text", "image", "audio", "like", "using", "k", "fusion", "mode", "filter", "filters")
#: Non-file multipart fields larger than this are refused.
MAX_FORM_FIELD_BYTES = 256 << 10


async def search_from_json(request: Request) -> SearchQuery:
    body = await request.body()
    if not body.strip():
        raise bad_request('the body is empty: send a JSON object such as {"text": "a frog"}', "no_query")
    try:
        data = json.loads(body)
    except ValueError:
        raise bad_request("the body is not valid JSON") from None
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object")
    try:
        parsed = SearchRequest.model_validate(data)
    except ValidationError as exc:
        raise bad_request(validation_message(exc.errors())) from None
    uploads = [decode_base64(v, "image", i) for i, v in enumerate(as_list(parsed.image))]
    uploads += [decode_base64(v, "audio", i) for i, v in enumerate(as_list(parsed.audio))]
    return SearchQuery(
        text=as_list(parsed.text),
        uploads=uploads,
        like=as_list(parsed.like),
        using=parsed.using,
        k=parsed.k,
        filters=parsed.filters,
        fusion=parsed.fusion,
        mode=parsed.mode,
    )


async def search_from_form(request: Request, max_files: int) -> SearchQuery:
    from mmalign.plugin.index.filters import parse_filters

    form = await request.form(max_files=max_files, max_fields=64, max_part_size=MAX_FORM_FIELD_BYTES)
    try:
        unknown = sorted(set(form.keys()) - set(FORM_FIELDS))
        if unknown:
            raise bad_request(f"unknown field {unknown[0]!r}; fields: {list(FORM_FIELDS)}")
        uploads = []
        for modality in ("image", "audio"):
            for i, value in enumerate(form.getlist(modality)):
                if isinstance(value, UploadFile):
                    name = (value.filename or f"{modality}[{i}]").replace("\\", "/").rsplit("/", 1)[-1][:80]
                    uploads.append(Upload(modality, await value.read(), name))
                else:
                    uploads.append(decode_base64(value, modality, i))
        texts = [v for v in form.getlist("text") if isinstance(v, str)]
        filters: dict[str, Any] = {}
        raw_filters = form.get("filters")
        if isinstance(raw_filters, str) and raw_filters.strip():
            try:
                filters.update(loads_limited(raw_filters))
            except (ValueError, TypeError):
                raise bad_request('filters must be a JSON object {"key": value}') from None
        try:
            for key, values in parse_filters([v for v in form.getlist("filter") if isinstance(v, str)]).items():
                filters[key] = as_list(filters.get(key)) + values
        except ConfigError as exc:
            raise bad_request(str(exc)) from None
        fields: dict[str, Any] = {}
        for name in ("using", "k", "fusion", "mode"):
            value = form.get(name)
            if isinstance(value, str) and value.strip():
                fields[name] = form_number(value) if name == "k" else value.strip()
        try:
            parsed = SearchRequest.model_validate({**fields, "filters": filters or None})
        except ValidationError as exc:
            raise bad_request(validation_message(exc.errors())) from None
        return SearchQuery(
            text=texts,
            uploads=uploads,
            like=[v for v in form.getlist("like") if isinstance(v, str)],
            using=parsed.using,
            k=parsed.k,
            filters=parsed.filters,
            fusion=parsed.fusion,
            mode=parsed.mode,
        )
    finally:
        await form.close()


def search_openapi_body() -> dict[str, Any]:
    """The request body of ``POST /v1/search`` in the OpenAPI document: JSON, or multipart with files."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": SearchRequest.model_json_schema(ref_template="#/components/schemas/{model}")
                },
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            "text": {"type": "array", "items": {"type": "string"}},
                            "image": {"type": "array", "items": {"type": "string", "format": "binary"}},
                            "audio": {"type": "array", "items": {"type": "string", "format": "binary"}},
                            "like": {"type": "array", "items": {"type": "string"}},
                            "using": {"type": "string", "enum": list(SEARCH_TARGETS)},
                            "k": {"type": "integer", "default": 10},
                            "fusion": {"type": "string", "enum": list(SEARCH_FUSIONS)},
                            "filter": {"type": "array", "items": {"type": "string"}, "description": "KEY=VALUE"},
                            "filters": {"type": "string", "description": "a JSON object, as in the JSON body"},
                        },
                    }
                },
            },
        }
    }
