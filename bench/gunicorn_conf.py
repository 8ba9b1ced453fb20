"""gunicorn settings of the benchmark's throughput runs (:mod:`bench.throughput`): 2 sync workers, quiet."""

import os

wsgi_app = "bench.wsgi:application"
bind = os.environ.get("GUNICORN_BIND", "127.0.0.1:8765")
workers = 2
worker_class = "sync"
preload_app = False
timeout = 60
graceful_timeout = 10
accesslog = None
loglevel = "warning"
control_socket_disable = True  # gunicorn >= 27: no per-user control socket to fight over
