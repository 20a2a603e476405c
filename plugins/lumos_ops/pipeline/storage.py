"""Object storage for exposures, catalogues and night reports: a local directory or S3.

Both stores expose the same small interface (:class:`ObjectStore`); :class:`DownloadCache` keeps
local copies keyed by checksum so that nothing is downloaded twice. S3 access goes through a boto3
client whose retries with back-off are configured with ``botocore.config.Config`` (no hand loops);
any S3-compatible endpoint (AWS, MinIO, Ceph) works through ``endpoint_url``. Credentials never
pass through this module: boto3 resolves them (environment, profile, instance role), or the
Airflow hook builds the client from an Airflow Connection.
"""

from __future__ import annotations

import abc
import dataclasses
import hashlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from lumos_ops.exceptions import LumosValueError, StorageError
from lumos_ops.pipeline.keys import validate_key

__all__ = [
    "ObjectInfo",
    "ObjectStore",
    "LocalObjectStore",
    "S3ObjectStore",
    "S3Settings",
    "DownloadCache",
    "file_md5",
    "open_store",
]

_CHUNK = 1 << 20


def file_md5(path: str | os.PathLike[str]) -> str:
    """Hex MD5 of a file (the S3 ETag of a single-part upload)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclasses.dataclass(frozen=True)
class ObjectInfo:
    """Size and checksum of a stored object.

    Attributes
    ----------
    key : str
        Object key relative to the store root.
    size : int
        Bytes.
    checksum : str
        Hex MD5 of the content for local files and single-part S3 uploads; the S3 ETag
        (``<md5 of part md5s>-<n parts>``) for multipart uploads.
    """

    key: str
    size: int
    checksum: str

    @property
    def verifiable_md5(self) -> bool:
        """Whether :attr:`checksum` is the MD5 of the whole content (not a multipart ETag)."""
        return len(self.checksum) == 32 and "-" not in self.checksum


class ObjectStore(abc.ABC):
    """Minimal object-store interface used by the pipeline."""

    @abc.abstractmethod
    def list(self, prefix: str) -> list[ObjectInfo]:
        """Objects whose key starts with ``prefix`` (sorted by key)."""

    @abc.abstractmethod
    def head(self, key: str) -> ObjectInfo:
        """Size and checksum of one object; :class:`StorageError` when it does not exist."""

    @abc.abstractmethod
    def download(self, key: str, dest: Path) -> None:
        """Write the object's content to ``dest`` (no verification; see :class:`DownloadCache`)."""

    @abc.abstractmethod
    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> ObjectInfo:
        """Store ``data`` under ``key`` (overwrites)."""

    @abc.abstractmethod
    def put_file(self, key: str, path: str | os.PathLike[str]) -> ObjectInfo:
        """Upload a local file under ``key`` (overwrites)."""

    @abc.abstractmethod
    def describe(self) -> str:
        """Where the store points (for logs; never includes credentials)."""

    def object_url(self, key: str) -> str:
        """The URL of the object ``key`` (for messages)."""
        return f"{self.describe()}/{key}"

    def local_path(self, key: str) -> Path | None:
        """A path readable in place, when the store is a local directory; None otherwise."""
        return None

    def get_bytes(self, key: str) -> bytes:
        """Content of a (small) object."""
        validate_key(key)
        with tempfile.TemporaryDirectory(prefix="lumos-get-") as tmp:
            dest = Path(tmp) / "object"
            self.download(key, dest)
            return dest.read_bytes()


class LocalObjectStore(ObjectStore):
    """Objects as files under a root directory (the embedded default).

    Parameters
    ----------
    root : path-like
        Directory holding the objects.
    create : bool, keyword-only
        Create the directory when missing; False: a missing one raises :class:`StorageError` (a
        store that should already hold exposures, where a mistyped path must not pass as empty).
    """

    def __init__(self, root: str | os.PathLike[str], *, create: bool = True) -> None:
        self.root = Path(root).expanduser().resolve()
        if not create and not self.root.is_dir():
            what = "is not a directory" if self.root.exists() else "does not exist"
            raise StorageError(f"store directory {self.root} {what}: check the store location "
                               "(--store / LUMOS_STORE_URL)")
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        path = (self.root / validate_key(key)).resolve()
        if self.root not in path.parents:
            raise StorageError(f"object key {key!r} resolves outside the store root {self.root}")
        return path

    def list(self, prefix: str) -> list[ObjectInfo]:
        base = self.root / prefix.rsplit("/", 1)[0] if "/" in prefix else self.root
        if not base.is_dir():
            return []
        out = []
        for path in sorted(base.rglob("*")):
            if not path.is_file() or path.name.startswith(".lumos-"):
                continue
            key = path.relative_to(self.root).as_posix()
            if key.startswith(prefix):
                out.append(ObjectInfo(key=key, size=path.stat().st_size, checksum=file_md5(path)))
        return out

    def head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        if not path.is_file():
            raise StorageError(f"{self.describe()}: no object {key!r}")
        return ObjectInfo(key=key, size=path.stat().st_size, checksum=file_md5(path))

    def download(self, key: str, dest: Path) -> None:
        path = self._path(key)
        if not path.is_file():
            raise StorageError(f"{self.describe()}: no object {key!r}")
        shutil.copyfile(path, dest)

    def local_path(self, key: str) -> Path | None:
        return self._path(key)

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> ObjectInfo:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".lumos-{path.name}.part")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return ObjectInfo(key=key, size=len(data), checksum=hashlib.md5(data, usedforsecurity=False).hexdigest())

    def put_file(self, key: str, path: str | os.PathLike[str]) -> ObjectInfo:
        dest = self._path(key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".lumos-{dest.name}.part")
        shutil.copyfile(path, tmp)
        os.replace(tmp, dest)
        return self.head(key)

    def describe(self) -> str:
        return f"file://{self.root}"


@dataclasses.dataclass(frozen=True)
class S3Settings:
    """How to reach an S3-compatible store.

    Parameters
    ----------
    bucket : str
        Bucket name.
    prefix : str
        Key prefix prepended to every pipeline key ('' or ending without '/').
    endpoint_url : str or None
        e.g. ``http://minio:9000``; None for AWS.
    region : str or None
        Region name (None: boto3's default).
    max_attempts : int
        Total attempts per request, retried with exponential back-off by botocore.
    retry_mode : str
        botocore retry mode, ``"standard"`` or ``"adaptive"``.
    connect_timeout_s, read_timeout_s : float
        Socket timeouts (s).
    """

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    max_attempts: int = 5
    retry_mode: str = "standard"
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if not self.bucket or not all(c.islower() or c.isdigit() or c in ".-" for c in self.bucket):
            raise LumosValueError(f"bucket={self.bucket!r}: use lower-case letters, digits, '.' and '-'")
        if self.prefix:
            validate_key(self.prefix, what="prefix")
        if self.max_attempts < 1:
            raise LumosValueError(f"max_attempts={self.max_attempts} must be >= 1")
        if self.retry_mode not in ("standard", "adaptive", "legacy"):
            raise LumosValueError(f"retry_mode={self.retry_mode!r}: use 'standard' or 'adaptive'")

    def botocore_config(self) -> Any:
        """The ``botocore.config.Config`` carrying retries and timeouts."""
        from botocore.config import Config

        return Config(
            retries={"total_max_attempts": self.max_attempts, "mode": self.retry_mode},
            connect_timeout=self.connect_timeout_s,
            read_timeout=self.read_timeout_s,
        )


class S3ObjectStore(ObjectStore):
    """Objects in an S3 bucket (AWS, MinIO, Ceph...).

    Parameters
    ----------
    settings : S3Settings
        Bucket, prefix and retry policy.
    client : botocore S3 client, optional
        A client built elsewhere (e.g. by Airflow's ``S3Hook`` from a Connection). By default one
        is built with ``boto3.client("s3", endpoint_url=..., config=settings.botocore_config())``,
        which takes credentials from boto3's usual chain.
    """

    def __init__(self, settings: S3Settings, *, client: Any | None = None) -> None:
        if client is not None:  # messages name the endpoint the client talks to, not a setting it ignores
            endpoint = getattr(getattr(client, "meta", None), "endpoint_url", None)
            settings = dataclasses.replace(settings, endpoint_url=endpoint or settings.endpoint_url)
        self.settings = settings
        if client is None:
            import boto3

            client = boto3.client(
                "s3",
                endpoint_url=settings.endpoint_url,
                region_name=settings.region,
                config=settings.botocore_config(),
            )
        self.client = client

    def _full(self, key: str) -> str:
        validate_key(key)
        return f"{self.settings.prefix.rstrip('/')}/{key}" if self.settings.prefix else key

    def _relative(self, full: str) -> str:
        if self.settings.prefix:
            return full[len(self.settings.prefix.rstrip("/")) + 1 :]
        return full

    def _error(self, exc: Exception, key: str, action: str) -> StorageError:
        return StorageError(f"{self.describe()}: cannot {action} {key!r}: {exc}")

    def list(self, prefix: str) -> list[ObjectInfo]:
        from botocore.exceptions import BotoCoreError, ClientError

        full_prefix = f"{self.settings.prefix.rstrip('/')}/{prefix}" if self.settings.prefix else prefix
        out = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.settings.bucket, Prefix=full_prefix):
                for item in page.get("Contents", []):
                    out.append(
                        ObjectInfo(key=self._relative(item["Key"]), size=int(item["Size"]), checksum=item["ETag"].strip('"'))
                    )
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, prefix, "list") from None
        return sorted(out, key=lambda info: info.key)

    def head(self, key: str) -> ObjectInfo:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            meta = self.client.head_object(Bucket=self.settings.bucket, Key=self._full(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise StorageError(f"{self.describe()}: no object {key!r}") from None
            raise self._error(exc, key, "stat") from None
        except BotoCoreError as exc:
            raise self._error(exc, key, "stat") from None
        return ObjectInfo(key=key, size=int(meta["ContentLength"]), checksum=meta["ETag"].strip('"'))

    def download(self, key: str, dest: Path) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.download_file(self.settings.bucket, self._full(key), str(dest))
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, key, "download") from None

    def put_bytes(self, key: str, data: bytes, *, content_type: str = "application/octet-stream") -> ObjectInfo:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            reply = self.client.put_object(
                Bucket=self.settings.bucket, Key=self._full(key), Body=data, ContentType=content_type
            )
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, key, "upload") from None
        return ObjectInfo(key=key, size=len(data), checksum=reply["ETag"].strip('"'))

    def put_file(self, key: str, path: str | os.PathLike[str]) -> ObjectInfo:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            self.client.upload_file(str(path), self.settings.bucket, self._full(key))
        except (BotoCoreError, ClientError) as exc:
            raise self._error(exc, key, "upload") from None
        return self.head(key)

    def describe(self) -> str:
        where = f" at {self.settings.endpoint_url}" if self.settings.endpoint_url else ""
        prefix = f"/{self.settings.prefix}" if self.settings.prefix else ""
        return f"s3://{self.settings.bucket}{prefix}{where}"

    def object_url(self, key: str) -> str:
        prefix = f"/{self.settings.prefix}" if self.settings.prefix else ""
        return f"s3://{self.settings.bucket}{prefix}/{key}"


class DownloadCache:
    """Local copies of objects, keyed by checksum, verified on download.

    A cached file is named after the object's checksum, so a changed object (new checksum) is
    fetched again and an unchanged one never is. Objects of a local store are read in place.

    Parameters
    ----------
    root : path-like
        Cache directory (created when missing).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).expanduser()
        self.root.mkdir(parents=True, exist_ok=True)

    def path_for(self, info: ObjectInfo) -> Path:
        """Where the copy of ``info`` lives (whether or not it is there yet)."""
        safe = "".join(c for c in info.checksum if c.isalnum() or c == "-")
        suffix = "".join(Path(info.key).suffixes)[-16:]
        return self.root / safe[:2] / f"{safe}{suffix}"

    def fetch(self, store: ObjectStore, key: str) -> tuple[Path, ObjectInfo, bool]:
        """A verified local copy of the current version of ``key``.

        Returns
        -------
        path : Path
            Local file with the object's content.
        info : ObjectInfo
            Size and checksum of the version fetched (one HEAD request).
        downloaded : bool
            False when the copy came from the cache or the object was read in place.

        Raises
        ------
        StorageError
            Missing object, or a download whose size/checksum does not match the object (after
            the store's own retries); nothing is left in the cache then.
        """
        info = store.head(key)
        in_place = store.local_path(key)
        if in_place is not None:
            return in_place, info, False
        target = self.path_for(info)
        if target.is_file() and target.stat().st_size == info.size:
            return target, info, False
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".lumos-", dir=target.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            store.download(key, tmp)
            self._verify(store, info, tmp)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target, info, True

    @staticmethod
    def _verify(store: ObjectStore, info: ObjectInfo, path: Path) -> None:
        size = path.stat().st_size
        if size != info.size:
            raise StorageError(
                f"{store.describe()}: downloaded {size} bytes of {info.key!r}, expected {info.size}; the transfer "
                "was truncated, retry the task"
            )
        if info.verifiable_md5:
            digest = file_md5(path)
            if digest != info.checksum:
                raise StorageError(
                    f"{store.describe()}: checksum of the download of {info.key!r} is {digest}, "
                    f"expected {info.checksum}; retry the task"
                )


def open_store(url: str, *, endpoint_url: str | None = None, region: str | None = None,
               max_attempts: int = 5, client: Any | None = None, create: bool = True) -> ObjectStore:
    """Open a store from a URL: ``file:///dir``, a plain directory path, or ``s3://bucket[/prefix]``.

    Parameters
    ----------
    url : str
        Store location.
    endpoint_url, region : str, optional
        For S3-compatible endpoints (MinIO, Ceph).
    max_attempts : int, keyword-only
        S3 attempts per request (botocore retries with back-off).
    client : botocore S3 client, optional
        Pre-built client (e.g. from Airflow's S3Hook).
    create : bool, keyword-only
        A local store's directory is created when missing; False: it must exist.
    """
    if url.startswith("s3://"):
        bucket, _, prefix = url[5:].partition("/")
        settings = S3Settings(bucket=bucket, prefix=prefix.strip("/"), endpoint_url=endpoint_url,
                              region=region, max_attempts=max_attempts)
        return S3ObjectStore(settings, client=client)
    if url.startswith("file://"):
        return LocalObjectStore(url[7:], create=create)
    if "://" in url:
        raise LumosValueError(f"store URL {url!r}: use file:///dir, a directory path or s3://bucket/prefix")
    return LocalObjectStore(url, create=create)
