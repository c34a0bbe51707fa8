"""Structured logs: fixed fields and per-call fields both reach the line."""

from __future__ import annotations

import io
import json
import logging

from harmony_fleet.logging_setup import FieldsAdapter, JsonFormatter


def test_fields_adapter_merges_call_fields_with_its_own() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("test.fields")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        FieldsAdapter(logger, {"device_id": "edge-1"}).info("stopped", extra={"exit_code": 3})
    finally:
        logger.removeHandler(handler)
    line = json.loads(stream.getvalue())
    assert line["device_id"] == "edge-1"
    assert line["exit_code"] == 3
    assert line["msg"] == "stopped"
