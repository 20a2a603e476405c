import boto3
import pytest

from lumos_ops.exceptions import StorageError
from lumos_ops.pipeline.storage import (
    DownloadCache,
    LocalObjectStore,
    ObjectInfo,
    S3ObjectStore,
    S3Settings,
    file_md5,
    open_store,
)


def test_local_store_round_trip_and_root_confinement(tmp_path):
    store = LocalObjectStore(tmp_path / "store")
    info = store.put_bytes("a/b/c.fits", b"hello")
    assert info.size == 5 and info.verifiable_md5
    assert [i.key for i in store.list("a/b/")] == ["a/b/c.fits"]
    assert store.head("a/b/c.fits") == info
    assert store.get_bytes("a/b/c.fits") == b"hello"
    with pytest.raises(StorageError, match="no object"):
        store.head("a/b/missing.fits")
    with pytest.raises(StorageError):
        store.put_bytes("../escape", b"x")
    assert isinstance(open_store(f"file://{tmp_path / 'store'}"), LocalObjectStore)


def test_s3_store_against_moto_server(s3_server, tmp_path):
    boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1").create_bucket(Bucket="lumos")
    store = open_store("s3://lumos/survey", endpoint_url=s3_server, max_attempts=3)
    assert isinstance(store, S3ObjectStore)
    assert store.client.meta.config.retries == {"total_max_attempts": 3, "mode": "standard"}
    store.put_bytes("exposures/2026-11-20/exp0000001_ccd01.fits", b"x" * 1000)
    store.put_bytes("exposures/2026-11-21/exp0000001_ccd01.fits", b"y")
    listed = store.list("exposures/2026-11-20/")
    assert [i.key for i in listed] == ["exposures/2026-11-20/exp0000001_ccd01.fits"]
    assert listed[0].size == 1000 and listed[0].verifiable_md5
    with pytest.raises(StorageError, match="no object"):
        store.head("exposures/none.fits")
    assert "s3://lumos/survey" in store.describe() and "testing" not in store.describe()

    cache = DownloadCache(tmp_path / "cache")
    path, info, downloaded = cache.fetch(store, "exposures/2026-11-20/exp0000001_ccd01.fits")
    assert downloaded and path.read_bytes() == b"x" * 1000 and file_md5(path) == info.checksum
    again, _, downloaded = cache.fetch(store, "exposures/2026-11-20/exp0000001_ccd01.fits")
    assert again == path and not downloaded
    store.put_bytes("exposures/2026-11-20/exp0000001_ccd01.fits", b"z" * 10)
    changed, info2, downloaded = cache.fetch(store, "exposures/2026-11-20/exp0000001_ccd01.fits")
    assert downloaded and changed != path and info2.size == 10


class _TruncatingStore(LocalObjectStore):
    """A store whose downloads lose bytes (a broken transfer)."""

    def local_path(self, key):
        return None

    def download(self, key, dest):
        dest.write_bytes(self._path(key).read_bytes()[:-1])


class _BitFlipStore(_TruncatingStore):
    def download(self, key, dest):
        data = bytearray(self._path(key).read_bytes())
        data[0] ^= 0xFF
        dest.write_bytes(bytes(data))


@pytest.mark.parametrize("store_cls, match", [(_TruncatingStore, "truncated"), (_BitFlipStore, "checksum")])
def test_bad_downloads_are_detected_and_not_cached(tmp_path, store_cls, match):
    store = store_cls(tmp_path / "store")
    store.put_bytes("k.fits", b"0123456789")
    cache = DownloadCache(tmp_path / "cache")
    with pytest.raises(StorageError, match=match):
        cache.fetch(store, "k.fits")
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))


def test_s3_settings_validation():
    with pytest.raises(ValueError, match="bucket"):
        S3Settings(bucket="")
    with pytest.raises(ValueError, match="max_attempts"):
        S3Settings(bucket="b", max_attempts=0)
    assert not ObjectInfo("k", 1, "abc-2").verifiable_md5


def test_bucket_names_are_lower_case_and_a_given_client_names_its_own_endpoint():
    """Upper case is refused as the message says; a store over a client built elsewhere (Airflow's
    S3Hook) describes the endpoint that client talks to, not the setting it does not use."""

    with pytest.raises(ValueError, match="lower-case"):
        S3Settings(bucket="Survey")
    client = boto3.client("s3", endpoint_url="http://127.0.0.1:5573", region_name="us-east-1",
                          aws_access_key_id="x", aws_secret_access_key="y")
    store = S3ObjectStore(S3Settings(bucket="survey", prefix="paus", endpoint_url="http://127.0.0.1:5579"),
                          client=client)
    assert store.describe() == "s3://survey/paus at http://127.0.0.1:5573"


def test_night_run_through_airflow_gives_the_s3_connection_the_endpoint_it_names(monkeypatch):
    """``--endpoint-url`` (or $LUMOS_S3_ENDPOINT_URL for an undefined Connection) reaches the DAG's
    Connection: the DAG no longer talks to AWS while the messages name the endpoint."""
    import json
    import os

    from lumos_ops.cli import night
    from lumos_ops.pipeline.config import NightConfig

    config = NightConfig(store_url="s3://survey/paus", endpoint_url="http://127.0.0.1:5573", region="us-east-1")
    monkeypatch.setattr(night, "_airflow_connection_defined", lambda conn_id: False)
    monkeypatch.delenv("AIRFLOW_CONN_LUMOS_S3", raising=False)
    night._default_airflow_s3_connection("lumos_s3", None, config)
    assert json.loads(os.environ["AIRFLOW_CONN_LUMOS_S3"]) == {
        "conn_type": "aws", "extra": {"endpoint_url": "http://127.0.0.1:5573", "region_name": "us-east-1"}}
    defined = {"conn_type": "aws", "login": "key", "password": "secret", "extra": {"endpoint_url": "http://minio:9000"}}
    monkeypatch.setenv("AIRFLOW_CONN_LUMOS_S3", json.dumps(defined))
    night._default_airflow_s3_connection("lumos_s3", None, config)  # a defined Connection is kept
    assert json.loads(os.environ["AIRFLOW_CONN_LUMOS_S3"]) == defined
    night._default_airflow_s3_connection("lumos_s3", "http://127.0.0.1:9100", config)  # --endpoint-url wins
    replaced = json.loads(os.environ["AIRFLOW_CONN_LUMOS_S3"])
    assert (replaced["login"], replaced["password"], replaced["extra"]["endpoint_url"]) == (
        "key", "secret", "http://127.0.0.1:9100")
