"""The HTTP transport: one keep-alive connection per node (per thread),
failover across nodes, bounded retries on 503/429 honouring Retry-After,
and typed errors carrying the node's own message. Standard library only."""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import socket
import ssl
import threading
import time
import urllib.parse
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

from .errors import BadRequest, Conflict, MassError, NoNodeAnswered, NotFound, Unauthorized

# A request body: bytes, or a function giving a fresh file object (and its
# size) for each attempt, so a failed upload can be sent again elsewhere.
Body = Union[None, bytes, Callable[[], Tuple[Any, int]]]


class Response:
    """A node's answer: status, headers (lower-case names) and body."""

    def __init__(self, status: int, headers: Dict[str, str], body: bytes, url: str) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.url = url

    def json(self) -> Any:
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise MassError(f"the answer is not JSON: {e}", status=self.status, url=self.url) from None


def error_text(body: bytes) -> str:
    """The ``error`` field of a JSON error body, else the body as text."""
    text = body.decode("utf-8", errors="replace")
    try:
        parsed = json.loads(text)
        if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
            return parsed["error"]
    except ValueError:
        pass
    return text.strip() or "(empty answer)"


def typed_error(status: int, message: str, url: str) -> MassError:
    if status == 404:
        return NotFound(message, status=status, url=url)
    if status == 409:
        return Conflict(message, status=status, url=url)
    if status in (401, 403):
        return Unauthorized(message, status=status, url=url)
    if 400 <= status < 500:
        return BadRequest(message, status=status, url=url)
    return MassError(message, status=status, url=url)


def retry_after(value: Optional[str], default: float = 1.0) -> float:
    """Seconds a ``Retry-After`` header asks to wait (seconds or an HTTP date)."""
    if not value:
        return default
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return default


class _Node:
    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlsplit(url.strip())
        if parsed.scheme not in ("http", "https"):
            raise ValueError(f"node URL '{url}': scheme '{parsed.scheme}' is not http or https")
        if not parsed.hostname:
            raise ValueError(f"node URL '{url}': no host")
        self.scheme = parsed.scheme
        self.host = parsed.hostname
        self.port = parsed.port or (443 if parsed.scheme == "https" else 80)
        self.prefix = parsed.path.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.base = f"{self.scheme}://{host}:{self.port}{self.prefix}"

    def __repr__(self) -> str:
        return self.base


def _describe(error: BaseException) -> str:
    if isinstance(error, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(error, ConnectionRefusedError):
        return "connection refused"
    if isinstance(error, ssl.SSLCertVerificationError):
        return f"{error} (trust the node's certificate: Client(..., ca_cert=PATH) or MASS_CA_CERT)"
    text = str(error) or type(error).__name__
    return f"{type(error).__name__}: {text}" if type(error).__name__ not in text else text


class Transport:
    """Sends requests to a list of nodes with failover.

    A call starts at the node that answered last. A node that cannot be
    reached, times out or answers 5xx is skipped for the next one; a 4xx is
    the caller's error and is raised at once (another node would say the
    same). When a whole round only got 503/429 answers (busy nodes), the
    transport waits as long as their ``Retry-After`` asks (at most
    ``max_retry_wait`` seconds) and tries another round, ``retries`` rounds
    at most.
    """

    def __init__(
        self,
        nodes: Sequence[str],
        *,
        token: Optional[str],
        ca_cert: Optional[str],
        timeout: float,
        retries: int,
        max_retry_wait: float,
    ) -> None:
        if isinstance(nodes, str):
            nodes = nodes.split(",")
        self.nodes = [_Node(n) for n in nodes if n.strip()]
        if not self.nodes:
            raise ValueError("no node URL given")
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.max_retry_wait = float(max_retry_wait)
        self.headers: Dict[str, str] = {"User-Agent": "mass-python/0.1", "Accept": "application/json"}
        if token:
            token = token.strip()
            if any(c in token for c in "\r\n"):
                raise ValueError("the API token has characters a header cannot carry")
            self.headers["Authorization"] = f"Bearer {token}"
        self.ssl_context: Optional[ssl.SSLContext] = None
        if ca_cert:
            if not os.path.exists(ca_cert):
                raise ValueError(f"ca_cert: no file {ca_cert}")
            self.ssl_context = ssl.create_default_context(cafile=ca_cert)
        self.preferred = 0
        self._local = threading.local()

    # -- connections -------------------------------------------------------

    def _connections(self) -> Dict[int, http.client.HTTPConnection]:
        conns = getattr(self._local, "conns", None)
        if conns is None:
            conns = {}
            self._local.conns = conns
        return conns

    def _connect(self, index: int, timeout: float) -> Tuple[http.client.HTTPConnection, bool]:
        """The node's open connection (reused: True) or a new one."""
        conns = self._connections()
        conn = conns.get(index)
        if conn is not None and conn.sock is not None:
            conn.sock.settimeout(timeout)
            return conn, True
        node = self.nodes[index]
        if node.scheme == "https":
            context = self.ssl_context or ssl.create_default_context()
            conn = http.client.HTTPSConnection(node.host, node.port, timeout=timeout, context=context)
        else:
            conn = http.client.HTTPConnection(node.host, node.port, timeout=timeout)
        conns[index] = conn
        return conn, False

    def _drop(self, index: int) -> None:
        conn = self._connections().pop(index, None)
        if conn is not None:
            conn.close()

    def close(self) -> None:
        for index in list(self._connections()):
            self._drop(index)

    def _once(
        self, index: int, method: str, target: str, body: Body, headers: Dict[str, str], timeout: float
    ) -> Response:
        """One exchange with one node; a stale kept-alive connection (closed
        by the node while idle) is replaced once."""
        for attempt in (0, 1):
            conn, reused = self._connect(index, timeout)
            payload: Any = body
            send_headers = dict(self.headers)
            send_headers.update(headers)
            opened = None
            if callable(body):
                opened, size = body()
                payload = opened
                send_headers["Content-Length"] = str(size)
            elif body is not None:
                send_headers["Content-Length"] = str(len(body))
            elif method in ("POST", "PUT"):
                send_headers["Content-Length"] = "0"
            try:
                conn.request(method, target, body=payload, headers=send_headers)
                answer = conn.getresponse()
                data = answer.read()
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as e:
                self._drop(index)
                if reused and attempt == 0:
                    continue
                raise e
            except BaseException:
                self._drop(index)
                raise
            finally:
                if opened is not None:
                    opened.close()
            if answer.will_close:
                self._drop(index)
            url = f"{self.nodes[index].scheme}://{self.nodes[index].host}:{self.nodes[index].port}{target}"
            return Response(answer.status, {k.lower(): v for k, v in answer.getheaders()}, data, url)
        raise AssertionError("unreachable")

    # -- calls -------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Optional[Sequence[Tuple[str, Any]]] = None,
        body: Body = None,
        json_body: Any = None,
        headers: Optional[Dict[str, str]] = None,
        timeout: Optional[float] = None,
        idempotent: bool = True,
    ) -> Response:
        """Sends ``method path`` to the nodes in turn; returns the first 2xx.

        ``idempotent=False`` calls (a rollback) go to another node only when
        the first could not have acted on them: connection refused, or a 5xx
        answer; never after a timeout or a connection lost mid-call.
        """
        headers = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body, allow_nan=False).encode("utf-8")
            headers["Content-Type"] = "application/json"
        target_path = path if path.startswith("/") else "/" + path
        if query:
            pairs = [(k, str(v)) for k, v in query if v is not None]
            if pairs:
                target_path += "?" + urllib.parse.urlencode(pairs)
        timeout = self.timeout if timeout is None else float(timeout)
        attempts: List[str] = []
        for round_ in range(self.retries + 1):
            waits: List[float] = []
            start = self.preferred
            for offset in range(len(self.nodes)):
                index = (start + offset) % len(self.nodes)
                node = self.nodes[index]
                target = node.prefix + target_path
                url = node.base + target_path
                try:
                    response = self._once(index, method, target, body, headers, timeout)
                except ConnectionRefusedError as e:
                    attempts.append(f"{url}: {_describe(e)}")
                    continue
                except (OSError, http.client.HTTPException) as e:
                    attempts.append(f"{url}: {_describe(e)}")
                    if not idempotent:
                        raise NoNodeAnswered(attempts) from None
                    continue
                if 200 <= response.status < 300:
                    self.preferred = index
                    return response
                message = error_text(response.body)
                if response.status >= 500 or response.status == 429:
                    attempts.append(f"{url}: {response.status} {message}")
                    if response.status in (429, 503):
                        waits.append(retry_after(response.headers.get("retry-after")))
                    continue
                raise typed_error(response.status, message, url)
            if not waits or round_ == self.retries:
                break
            time.sleep(min(min(waits), self.max_retry_wait))
        raise NoNodeAnswered(attempts)

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        return self.request(method, path, **kwargs).json()
