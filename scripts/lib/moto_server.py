"""Runs moto's server for the tests, with DynamoDB requests handled one at a time.

moto applies TransactWriteItems item by item and undoes a cancelled transaction by restoring a
copy of the table taken when it began, so two DynamoDB requests served in parallel can see each
other's partial writes, or a cancelled transaction can erase a committed one. DynamoDB itself is
atomic; serialising DynamoDB requests gives the emulator that property. Everything else (S3, and
SQS long polls that block for seconds) stays concurrent.

Usage: python scripts/lib/moto_server.py [-H 127.0.0.1] [-p 5000]
"""

import argparse
import threading

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple


class SerialDynamoDB:
    """WSGI middleware: a lock around every DynamoDB call (X-Amz-Target: DynamoDB_...)."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()

    def __call__(self, environ, start_response):
        if not environ.get("HTTP_X_AMZ_TARGET", "").startswith("DynamoDB_"):
            return self.app(environ, start_response)
        with self.lock:
            # Produce the whole body inside the lock: the response is computed lazily.
            return list(self.app(environ, start_response))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    app = SerialDynamoDB(DomainDispatcherApplication(create_backend_app))
    run_simple(args.host, args.port, app, threaded=True)


if __name__ == "__main__":
    main()
