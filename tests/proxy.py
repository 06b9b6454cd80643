"""A TCP proxy on loopback that can be frozen: a server that stops answering, TCP still up.

Frozen, it keeps every connection open and accepts new ones, but forwards
nothing either way: what a client sees of a server stopped with SIGSTOP, or
of a network that drops packets without a reset. Keepalives are answered by
the kernel and data sent is acknowledged, so neither ``statement_timeout``
nor ``tcp_user_timeout`` nor keepalives ever fire.
"""

from __future__ import annotations

import select
import socket
import threading
import time

import psycopg2.extensions


class FreezableProxy:
    """Forward 127.0.0.1:<port> to ``target`` until :meth:`freeze`; :meth:`thaw` resumes."""

    def __init__(self, host: str, port: int) -> None:
        self._target = (host, port)
        self._listener = socket.socket()
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._frozen = threading.Event()
        self._closed = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self.accepted = 0  # connections accepted so far, frozen or not
        accept = threading.Thread(target=self._accept, name="test-proxy", daemon=True)
        accept.start()
        self._threads.append(accept)

    @classmethod
    def for_dsn(cls, dsn: str) -> tuple[FreezableProxy, str]:
        """A proxy in front of the PostgreSQL of ``dsn``, and the DSN that goes through it."""
        params = psycopg2.extensions.parse_dsn(dsn)
        proxy = cls(params.get("host", "127.0.0.1"), int(params.get("port", 5432)))
        params.update(host="127.0.0.1", port=str(proxy.port))
        return proxy, " ".join(f"{key}='{value}'" for key, value in params.items())

    def freeze(self) -> None:
        self._frozen.set()

    def thaw(self) -> None:
        self._frozen.clear()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._sockets += [client, upstream]
                self.accepted += 1
            pump = threading.Thread(target=self._pump, args=(client, upstream), daemon=True)
            pump.start()
            self._threads.append(pump)

    def _pump(self, client: socket.socket, upstream: socket.socket) -> None:
        peers = {client: upstream, upstream: client}
        try:
            while not self._closed.is_set():
                if self._frozen.is_set():
                    time.sleep(0.02)
                    continue
                readable, _, _ = select.select(list(peers), [], [], 0.05)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    peers[sock].sendall(data)
        except OSError:
            return
        finally:
            client.close()
            upstream.close()

    def close(self) -> None:
        self._closed.set()
        self._frozen.clear()
        for thread in self._threads:
            thread.join(5)
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                sock.close()
