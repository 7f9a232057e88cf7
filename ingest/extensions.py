"""Extension objects, created once here and bound to the app in create_app."""

import sys

from flask_cors import CORS
from flask_limiter import Limiter
from flask_migrate import Migrate
from flask_socketio import SocketIO
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import MetaData

# Stable constraint names, so migrations can drop and alter them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

db = SQLAlchemy(metadata=MetaData(naming_convention=NAMING_CONVENTION))
migrate = Migrate()
cors = CORS()
socketio = SocketIO()


def _unkeyed() -> str:
    # Every limit in this app names its own key function; this default is never used.
    return "unkeyed"


limiter = Limiter(key_func=_unkeyed)


def green_process() -> bool:
    """Whether this process runs under eventlet's monkey-patching (wsgi.py, eventlet mode).

    Only then may code use eventlet's own primitives; the threading mode and the test
    client never import it.
    """
    eventlet = sys.modules.get("eventlet")
    return eventlet is not None and eventlet.patcher.is_monkey_patched("thread")
