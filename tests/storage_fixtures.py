"""A loopback S3 for the storage tests: moto's server, one bucket per test, ``AWS_*`` set."""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Iterator
from typing import Any

import attrs
import httpx
import pytest

pytest.importorskip("obstore")
moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")

ACCESS_KEY = "AKIAFREEPIKBGTEST0001"
#: Distinctive, so any leak into an error message is found by a substring search.
SECRET_KEY = "aws-secret-7f3a9c1e-DO-NOT-LEAK"
REGION = "us-east-1"
_AWS_ENV = (
    "AWS_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_SESSION_TOKEN",
    "AWS_ENDPOINT_URL_S3",
    "AWS_BUCKET",
    "AWS_BUCKET_NAME",
)
_buckets = itertools.count()


@attrs.frozen
class S3:
    """A bucket on the loopback moto server, and a boto3 client to inspect it."""

    endpoint: str
    bucket: str
    client: Any

    def url(self, prefix: str = "") -> str:
        return f"s3://{self.bucket}/{prefix}"

    def keys(self) -> list[str]:
        listing = self.client.list_objects_v2(Bucket=self.bucket)
        return [entry["Key"] for entry in listing.get("Contents", [])]

    def head(self, key: str, **kwargs: Any) -> dict[str, Any]:
        return dict(self.client.head_object(Bucket=self.bucket, Key=key, **kwargs))

    def read(self, key: str) -> bytes:
        data: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return data

    def uploads(self) -> list[Any]:
        found: list[Any] = self.client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
        return found


@pytest.fixture(scope="session", name="moto_endpoint")
def moto_endpoint_fixture() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 and a free port, for the whole session."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(scope="session", name="boto")
def boto_fixture(moto_endpoint: str) -> Any:
    return boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )


def set_aws_env(monkeypatch: pytest.MonkeyPatch, endpoint: str, secret: str = SECRET_KEY) -> None:
    """Point obstore's environment lookup at ``endpoint``, and nowhere else."""
    for name in _AWS_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")


@pytest.fixture(name="s3")
def s3_fixture(moto_endpoint: str, boto: Any, monkeypatch: pytest.MonkeyPatch) -> S3:
    """A fresh, empty bucket, with the ``AWS_*`` variables pointing at it."""
    bucket = f"freepik-bg-test-{next(_buckets)}"
    boto.create_bucket(Bucket=bucket)
    set_aws_env(monkeypatch, moto_endpoint)
    return S3(moto_endpoint, bucket, boto)


@pytest.fixture(name="moto_auth")
def moto_auth_fixture(moto_endpoint: str) -> Iterator[tuple[str, str]]:
    """Turn on moto's credential checks; yield an IAM key pair it accepts."""
    iam = boto3.client(
        "iam",
        endpoint_url=moto_endpoint,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    user = f"storage-test-{next(_buckets)}"
    iam.create_user(UserName=user)
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*"}]}
    policy["Statement"][0]["Resource"] = "*"  # type: ignore[index]
    iam.put_user_policy(UserName=user, PolicyName="s3", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName=user)["AccessKey"]
    # moto's server keeps this switch process-wide: always switch it back off.
    httpx.post(f"{moto_endpoint}/moto-api/reset-auth", content=b"0").raise_for_status()
    try:
        yield key["AccessKeyId"], key["SecretAccessKey"]
    finally:
        httpx.post(f"{moto_endpoint}/moto-api/reset-auth", content=b"inf").raise_for_status()
