"""The ``h2`` package's server connection, with three rulings changed for a server that keeps
one connection per client process (as Go's client does).

- A malformed request is a stream error (RFC 9113 §8.1.1): ``h2`` turns a body that does
  not match its ``content-length``, a ``content-length`` that is not one number, or
  trailers without END_STREAM into a connection error, losing every other stream. Here
  the stream is reset with PROTOCOL_ERROR (the second by ``h2request.parse_request``) and
  the connection goes on, as in Go.
- A header block over ``SETTINGS_MAX_HEADER_LIST_SIZE`` is decoded in full (the HPACK
  table must stay in step with the peer's) and left for the server to answer 431, as Go
  does; ``h2`` would end the connection. Only a block over ``hard_header_limit`` (an HPACK
  bomb, far past anything a client sends by mistake) still ends the connection.
- A GOAWAY from the client does not close the connection for sending: its
  ``last_stream_id`` names streams the server opened (none: no push), and the client
  still waits for the answers to its open requests (Go's ``ClientConn.Shutdown``).
  ``h2`` would refuse every later frame and drop the output not yet written.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.stream

from mly.http.h2limits import hard_header_limit

__all__ = ["H2_CONFIG", "ServerConnection"]

#: ``h2``'s own header checks cost ~70 us per request (measured, docs/performance.md): more than
#: the eval of a cached row. ``h2request.parse_request`` does the checks RFC 9113 §8.2 requires
#: in one pass over the fields the request is built from anyway; outbound fields are the app's own.
H2_CONFIG = h2.config.H2Configuration(
    client_side=False,
    header_encoding=None,
    validate_inbound_headers=False,
    normalize_inbound_headers=False,
    validate_outbound_headers=False,
    normalize_outbound_headers=False,
    split_outbound_cookies=False,
)

class _ServerStream(h2.stream.H2Stream):
    """``H2Stream`` that leaves a ``content-length`` it cannot read to ``h2request``, and resets
    itself for trailers without END_STREAM: stream errors where ``h2`` has connection errors."""

    def receive_headers(self, headers: Any, end_stream: bool, header_encoding: Any) -> Any:
        try:
            return super().receive_headers(headers, end_stream, header_encoding)
        except h2.exceptions.ProtocolError:
            if end_stream or not self.state_machine.trailers_received:
                raise
            # h2 took the frame as trailers (state and event), then refused them for the missing
            # END_STREAM. The trailers event comes first: h2 hangs a PRIORITY update on it.
            trailers = h2.events.TrailersReceived(stream_id=self.stream_id)
            trailers.headers = list(headers)
            code = h2.errors.ErrorCodes.PROTOCOL_ERROR
            return self.reset_stream(code), [trailers, h2.events.StreamReset(stream_id=self.stream_id,
                                                                             error_code=code, remote_reset=False)]

    def _initialize_content_length(self, headers: Any) -> None:
        try:
            super()._initialize_content_length(headers)
        except h2.exceptions.ProtocolError:
            self._expected_content_length = None


class ServerConnection(h2.connection.H2Connection):
    """``H2Connection`` for the server side with stream errors where RFC 9113 allows them."""

    def __init__(self, max_header_list_size: int) -> None:
        super().__init__(H2_CONFIG)
        self.hard_header_limit = hard_header_limit(max_header_list_size)
        self.decoder.max_header_list_size = self.hard_header_limit

    def _local_settings_acked(self) -> Any:
        # h2 sets the decoder's limit to the advertised one when the peer acknowledges it.
        changes = super()._local_settings_acked()
        self.decoder.max_header_list_size = self.hard_header_limit
        return changes

    def _begin_new_stream(self, stream_id: int, allowed_ids: Any) -> Any:
        stream = super()._begin_new_stream(stream_id, allowed_ids)
        stream.__class__ = _ServerStream  # h2 names its stream class inside this method
        return stream

    def _receive_data_frame(self, frame: Any) -> Any:
        try:
            return super()._receive_data_frame(frame)
        except h2.exceptions.InvalidBodyLengthError:
            # The stream has taken the frame (state and windows); END_STREAM is not processed.
            self.reset_stream(frame.stream_id, h2.errors.ErrorCodes.PROTOCOL_ERROR)
            # Nobody will read this frame's data: give its connection window back.
            self.acknowledge_received_data(frame.flow_controlled_length, frame.stream_id)
            return [], [h2.events.StreamReset(stream_id=frame.stream_id, error_code=h2.errors.ErrorCodes.PROTOCOL_ERROR,
                                              remote_reset=False)]

    def _receive_goaway_frame(self, frame: Any) -> Any:
        event = h2.events.ConnectionTerminated()
        event.error_code = h2.errors._error_code_from_int(frame.error_code)
        event.last_stream_id = frame.last_stream_id
        event.additional_data = frame.additional_data or None
        return [], [event]
