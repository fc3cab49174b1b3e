"""Runs moto's server for the tests, with DynamoDB requests handled one at a time.

moto applies TransactWriteItems item by item and undoes a cancelled transaction by restoring a
copy of the table taken when it began, so two DynamoDB requests served in parallel can see each
other's partial writes, or a cancelled transaction can erase a committed one. DynamoDB itself is
atomic; serialising DynamoDB requests gives the emulator that property.

moto's SQS ReceiveMessage is not atomic either: two receives on one queue served in parallel can
both take the same visible message (seen in CI: 51 deliveries of 50 messages to two consumers),
which SQS does not do while a message is held. Receives are therefore served one at a time per
queue. Everything else (S3, other queues, sends and deletes) stays concurrent.

It also counts the AWS calls it serves, per service and operation, for the pipeline benchmark:
`GET /_recipe_mesh/calls` returns them as JSON ({"s3": {"GET object": 3, ...}, "dynamodb":
{"Query @store-1": 2, ...}, ...}; DynamoDB and SQS operations name the tables or queues) and
`POST /_recipe_mesh/calls/reset` sets them back to zero. Every other path goes to moto unchanged.

Usage: python scripts/lib/moto_server.py [-H 127.0.0.1] [-p 5000]
"""

import argparse
import io
import json
import re
import threading
from urllib.parse import parse_qs

from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.serving import run_simple

CALLS_PATH = "/_recipe_mesh/calls"
# The service in a SigV4 credential scope: Credential=<key>/<date>/<region>/<service>/aws4_request
SCOPE = re.compile(r"Credential=[^/,]+/[^/,]+/[^/,]+/([^/,]+)/aws4_request")


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


class SerialSqsReceive:
    """WSGI middleware: one ReceiveMessage at a time per queue (JSON protocol)."""

    def __init__(self, app):
        self.app = app
        self.guard = threading.Lock()
        self.locks = {}

    def __call__(self, environ, start_response):
        if environ.get("HTTP_X_AMZ_TARGET", "") != "AmazonSQS.ReceiveMessage":
            return self.app(environ, start_response)
        names = resource_names(read_body(environ))
        with self.guard:
            lock = self.locks.setdefault(names[0] if names else "", threading.Lock())
        with lock:
            # A long poll holds its queue's lock while it waits: a second consumer of the same
            # queue receives after it, as it would find the messages taken anyway.
            return list(self.app(environ, start_response))


def read_body(environ):
    """The request body, leaving an unread copy for moto."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    return body


def resource_names(body):
    """Tables (DynamoDB) or queues (SQS, last segment of QueueUrl) a JSON-protocol call names."""
    try:
        doc = json.loads(body or b"{}")
    except ValueError:
        return []
    names = set()

    def walk(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "TableName" and isinstance(value, str):
                    names.add(value)
                elif key == "QueueUrl" and isinstance(value, str):
                    names.add(value.rstrip("/").rsplit("/", 1)[-1])
                elif key == "RequestItems" and isinstance(value, dict):
                    names.update(value)
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    if isinstance(doc, dict):
        walk(doc)
    return sorted(names)


def s3_operation(environ):
    """S3 calls by method, target (service, bucket or object) and query parameter names,
    e.g. "GET bucket ?list-type", "PUT object". Path-style addressing (/bucket/key) assumed;
    with a virtual-hosted bucket the first path segment is the key."""
    path = environ.get("PATH_INFO", "")
    parts = [p for p in path.split("/") if p]
    host = environ.get("HTTP_HOST", "").split(":")[0]
    virtual = host.count(".") > 0 and not re.fullmatch(r"[0-9.]+", host) and host != "localhost"
    segments = len(parts) + (1 if virtual else 0)
    target = "service" if segments == 0 else "bucket" if segments == 1 else "object"
    names = sorted(k for k in parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
                   if not k.startswith("X-Amz-") and k not in ("x-id",))
    query = (" ?" + "&".join(names)) if names else ""
    return f"{environ.get('REQUEST_METHOD', '?')} {target}{query}"


class CallCounter:
    """WSGI middleware: counts every AWS call by service and operation, and serves the counts."""

    def __init__(self, app):
        self.app = app
        self.lock = threading.Lock()
        self.calls = {}

    def classify(self, environ):
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        scope = SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
        service = scope.group(1) if scope else None
        if target:
            prefix, _, operation = target.partition(".")
            if service is None:
                service = "dynamodb" if prefix.startswith("DynamoDB") else prefix.lower()
            names = resource_names(read_body(environ))
            suffix = (" @" + "+".join(names)) if names else ""
            return service, (operation or prefix) + suffix
        content_type = environ.get("CONTENT_TYPE", "")
        if environ.get("REQUEST_METHOD") == "POST" and content_type.startswith(
            "application/x-www-form-urlencoded"
        ):
            # Query protocol (Action=...): read the form, then hand moto an unread copy.
            body = read_body(environ)
            action = parse_qs(body.decode("utf-8", "replace")).get("Action")
            if action:
                return service or "unknown", action[0]
        action = parse_qs(environ.get("QUERY_STRING", "")).get("Action")
        if action:
            return service or "unknown", action[0]
        if service in (None, "s3"):
            return "s3", s3_operation(environ)
        return service, environ.get("REQUEST_METHOD", "?")

    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "")
        if path == CALLS_PATH and method == "GET":
            with self.lock:
                body = json.dumps(self.calls, sort_keys=True).encode()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        if path == CALLS_PATH + "/reset" and method == "POST":
            with self.lock:
                self.calls = {}
            start_response("204 No Content", [])
            return [b""]
        try:
            service, operation = self.classify(environ)
        except Exception:  # never let counting break a call
            service, operation = "unknown", "?"
        with self.lock:
            per_service = self.calls.setdefault(service, {})
            per_service[operation] = per_service.get(operation, 0) + 1
        return self.app(environ, start_response)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-H", "--host", default="127.0.0.1")
    parser.add_argument("-p", "--port", type=int, default=5000)
    args = parser.parse_args()
    moto = DomainDispatcherApplication(create_backend_app)
    app = CallCounter(SerialDynamoDB(SerialSqsReceive(moto)))
    run_simple(args.host, args.port, app, threaded=True)


if __name__ == "__main__":
    main()
