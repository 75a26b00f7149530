"""Event streams: the payload log, outcome events, local segments and Redis Streams.

One transport abstraction chosen by ``VIGIE_STREAM_URL`` (local append-only segments by
default, Redis Streams in production); no request transport and no model here.
"""
