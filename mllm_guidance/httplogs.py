"""URL credentials never reach a log handler.

httpx logs every request's URL at INFO (``HTTP Request: POST http://user:password@host/v1/...``),
and httpcore and the OpenAI client log theirs at DEBUG. The filter installed here on those loggers
masks the record itself (``redact``) where it is made, before any handler sees it: the project's,
``langgraph dev``'s, the MCP server's stderr, or one a user adds. ``import mllm_guidance`` installs it.
"""

from __future__ import annotations

import logging
from typing import Any

#: The loggers that write request URLs (a logger's filter acts only on its own records, so each is
#: named): httpx and httpcore, their ``httpx2`` / ``httpcore2`` twins that recent OpenAI clients use,
#: and the OpenAI client's own.
_CORE = ("connection", "http11", "http2", "proxy", "socks")
HTTP_LOGGERS = ("httpx", "httpx2", *(f"httpcore.{m}" for m in _CORE), *(f"httpcore2.{m}" for m in _CORE),
                "openai", "openai._base_client", "openai._response", "openai._legacy_response")
HTTP_PREFIXES = ("httpx", "httpcore", "openai")


def _mask(record: logging.LogRecord) -> None:
    from mllm_guidance.redact import redact_text

    try:
        message = record.getMessage()
    except Exception:  # noqa: BLE001 - a malformed record is the logging module's to report
        return
    masked = redact_text(message)
    if masked != message:
        record.msg, record.args = masked, ()


class MaskSecrets(logging.Filter):
    """Rewrites a record whose message holds a secret into its masked text."""

    def filter(self, record: logging.LogRecord) -> bool:
        _mask(record)
        return True


def mask_http_logs() -> None:
    """Mask every record of the HTTP loggers' families where it is made (a record factory, which
    covers loggers made later too), and filter the named loggers as well (should another library
    replace the factory without chaining ours). Idempotent."""
    previous = logging.getLogRecordFactory()
    if not getattr(previous, "masks_secrets", False):
        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if isinstance(record.name, str) and record.name.startswith(HTTP_PREFIXES):  # makeLogRecord: None
                _mask(record)
            return record

        factory.masks_secrets = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(factory)
    for name in HTTP_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, MaskSecrets) for f in logger.filters):
            logger.addFilter(MaskSecrets())
