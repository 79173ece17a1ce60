"""The Python client against the bundled example server (``make serve``, model ``ctr`` on :8080).

Usage: ``python examples/client_example.py [HOST:PORT]``. The second identical predict
is answered from the client's own memory tier, without a network call.
"""

from __future__ import annotations

import dataclasses
import sys
import time

from mly.client import Client
from mly.client.errors import RequestError


@dataclasses.dataclass
class Prediction:
    ctr: float
    segment: str


def main(host: str = "127.0.0.1:8080") -> int:
    row = {"country": "us", "device": "mobile", "category": "fashion", "hour": 18, "price": 19.99}
    with Client("ctr", hosts=[host]) as client:
        first = client.predict(row)
        print("first: ", first.status, first.data, f"(server: {first.service_time * 1e6:.0f} us)")
        started = time.perf_counter()
        again = client.predict(row)
        print("again: ", again.status, again.data, f"({(time.perf_counter() - started) * 1e6:.1f} us, no request)")
        rows = [row, dict(row, country="de", price=5.5), dict(row, device="tablet")]
        many = client.predict(rows, into=Prediction)
        print("batch: ", many.status, f"{many.cached_rows} of {len(rows)} rows local;", many.data)
        msg = client.new_message().string_key("country", "fr").string_key("device", "desktop")
        msg.string_key("category", "books").int_key("hour", 9).float_key("price", 12.5)
        print("message:", client.run(msg, into=Prediction).data)
        try:
            client.predict(dict(row, hour="18"))
        except RequestError as exc:  # rejected before any request, with the server's own message
            print("bad input:", exc.status, exc)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
