"""Fixtures shared by several test folders."""

from __future__ import annotations

import logging

import pytest


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 server (a real HTTP endpoint) on a free loopback port, with dummy AWS
    credentials in the environment; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    from lumos_ops.pipeline.local_postgres import free_port

    mp = pytest.MonkeyPatch()
    mp.setenv("AWS_ACCESS_KEY_ID", "testing")
    mp.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()
    mp.undo()
