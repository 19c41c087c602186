"""SecantusDB with a counter of the documents its storage layer decodes (for query-shape tests).

`explain` is not truthful on SecantusDB (SECANTUS.md rule 10), so the shape test counts what the server
really read: this wrapper replaces the `bson` module that `secantus.storage` uses with a proxy whose
`decode` counts calls, publishes the count on a loopback TCP port (connect → read the number), then
runs the normal server CLI. Usage: python decode_counting_server.py COUNTER_PORT -- secantusd args...
"""

from __future__ import annotations

import itertools
import socket
import sys
import threading
import types


def main(argv: list[str]) -> int:
    counter_port = int(argv[0])
    server_args = argv[argv.index("--") + 1:]

    import bson
    import secantus.storage as storage
    from secantus.cli import main as secantus_main

    calls = itertools.count()
    seen = [0]

    def counting_decode(*args, **kwargs):
        seen[0] = next(calls) + 1
        return bson.decode(*args, **kwargs)

    proxy = types.ModuleType("bson_counting")
    proxy.__dict__.update({k: getattr(bson, k) for k in dir(bson) if not k.startswith("__")})
    proxy.decode = counting_decode
    storage.bson = proxy

    listener = socket.create_server(("127.0.0.1", counter_port))

    def serve() -> None:
        while True:
            conn, _ = listener.accept()
            with conn:
                conn.sendall(str(seen[0]).encode())

    threading.Thread(target=serve, daemon=True, name="decode-counter").start()
    sys.argv = ["secantusd-py", *server_args]
    return secantus_main() or 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
