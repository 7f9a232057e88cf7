"""Entry point: `python wsgi.py` (what `make run` and the Dockerfile run), at HOST and PORT.

`python wsgi.py webhooks-worker` is the webhook delivery worker that a server starts
beside itself (WEBHOOK_WORKER=process, ingest/deliveries/process.py).
"""

import gc
import os
import sys

# Under the flask CLI (`flask --app wsgi db upgrade`) Flask is already imported, and the
# process runs a command rather than serving.
SERVING = "flask" not in sys.modules
DELIVERING = __name__ == "__main__" and sys.argv[1:] == ["webhooks-worker"]

# Monkey-patching must come before anything imports socket, threading, redis or the DB
# driver, so this one setting is read here rather than through ingest.config. Under the
# CLI, patching is too late (eventlet prints a traceback) and a migration has no use for it.
if SERVING and (os.environ.get("SOCKETIO_ASYNC_MODE") or "eventlet") == "eventlet":
    import warnings

    # eventlet warns on import that it is in maintenance mode; docs/deployment.md says how
    # to leave it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import eventlet

    eventlet.monkey_patch()

from ingest import create_app, lifecycle, maintenance, realtime
from ingest.deliveries import process
from ingest.extensions import socketio

# A CLI command serves nothing: threading mode spares it eventlet's import (and the
# deprecation warning that import prints on every `make run`).
app = create_app(None if SERVING else {"SOCKETIO_ASYNC_MODE": "threading"})
if SERVING and not DELIVERING:
    maintenance.start(app)
    lifecycle.start(app)
    realtime.start_sweeping_unjoined(app)
    if app.config["WEBHOOK_WORKER"] == "process":
        process.start_beside(app, os.path.abspath(__file__))
    elif app.config["WEBHOOK_WORKER"] == "inline":
        app.extensions["webhook_worker"].start()
    else:
        app.logger.info("WEBHOOK_WORKER is off: webhooks are delivered by workers elsewhere")

# What exists now (modules, the app and its extensions: ~140k objects) lives as long as
# the process. Freezing it keeps the cyclic GC's full collections from walking all of it:
# each walk held up every request for ~70 ms, a few times a minute under load (make bench).
gc.freeze()


def serve() -> None:
    host, port = app.config["HOST"], app.config["PORT"]
    url = f"http://{host}:{port}/"
    if app.config["ADMIN_TOKEN_GENERATED"]:
        # The fragment never reaches a server or its logs; the dashboard moves it into
        # sessionStorage and strips it from the address bar.
        kept = app.config["ADMIN_TOKEN_FILE"]
        origin = f"using the one kept in {kept}" if kept else "generated one for this run"
        print(
            f"\n  No ADMIN_TOKEN set; {origin}:\n"
            f"    {app.config['ADMIN_TOKEN']}\n"
            f"  Dashboard: {url}#admin_token={app.config['ADMIN_TOKEN']}\n",
            flush=True,
        )
    else:
        print(f"\n  Serving on {url}\n", flush=True)
    if app.config["SOCKETIO_ASYNC_MODE"] == "eventlet":
        _serve_eventlet(host, port)
    else:
        socketio.run(app, host=host, port=port, log_output=False, allow_unsafe_werkzeug=True)


def _serve_eventlet(host: str, port: int) -> None:
    """What socketio.run does under eventlet, plus TCP_NODELAY and ingest.serving's protocol.

    Without TCP_NODELAY, a keep-alive response larger than eventlet's write buffer waits
    ~40 ms for the client's delayed ACK (Nagle).
    """
    import socket

    import eventlet.green.socket
    import eventlet.wsgi

    from ingest import serving

    family, _, _, _, address = eventlet.green.socket.getaddrinfo(host, port)[0]
    # eventlet turns SO_REUSEPORT on by default: a second server started on the same port
    # would then share its connections silently (live clients missing half the events).
    try:
        listener = eventlet.listen(address, family, reuse_port=False)
    except OSError as error:
        sys.exit(f"Cannot listen on {host}:{port}: {error.strerror}.")
    listener.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    serving.raise_file_limit(app.config["MAX_CONNECTIONS"])
    eventlet.wsgi.server(
        listener,
        app,
        log_output=False,
        protocol=serving.protocol(app.config),
        max_size=app.config["MAX_CONNECTIONS"],
    )


if DELIVERING:
    process.run_beside_server(app)
elif __name__ == "__main__":
    serve()
