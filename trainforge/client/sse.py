"""The SSE reader lives in the SDK (trainforge/sdk/sse.py); kept here for old imports."""

from trainforge.sdk.sse import Event, parse

__all__ = ["Event", "parse"]
