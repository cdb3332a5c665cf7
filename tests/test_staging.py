"""Staging local files in a loopback moto S3, fetched by the emulator; walking folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

import freepik_bg
from freepik_bg import ConfigurationError, InvalidRequestError, SinkItem
from freepik_bg.testing import Emulator

from .conftest import PNG, make_png
from .storage_fixtures import (
    S3,
    boto_fixture,  # noqa: F401 - fixtures
    moto_endpoint_fixture,  # noqa: F401
    s3_fixture,  # noqa: F401
)

from freepik_bg._staging import (  # isort: skip - after the importorskip above
    MAX_IMAGE_BYTES,
    Stager,
    relative_output_name,
    walk_images,
)
from freepik_bg._storage import sink_from_url  # isort: skip

pytestmark = pytest.mark.anyio


def expires_in(url: str) -> int:
    return int(parse_qs(urlsplit(url).query)["X-Amz-Expires"][0])


async def test_a_local_image_goes_through_staging_the_service_and_the_sink(
    s3: S3, emu: Emulator, tmp_path: Path
) -> None:
    photo = tmp_path / "Shoe.PNG"
    photo.write_bytes(make_png(64, 48))
    stager = Stager(s3.url("staging/"))
    staged = await stager.stage(photo)
    assert staged.key.startswith("staging/")
    assert staged.key.endswith(".png")
    assert staged.source == f"s3://{s3.bucket}/{staged.key}"
    assert s3.keys() == [staged.key]
    assert s3.head(staged.key)["ContentType"] == "image/png"
    assert expires_in(staged.url) == 15 * 60

    sink = sink_from_url(s3.url("cutouts/"), overwrite=False)
    await sink.check()
    item = SinkItem(index=0, image_url=staged.source, name="shoe.png", size="high_resolution")
    async with freepik_bg.AsyncClient(emu.api_key, base_url=emu.base_url) as client:
        cutout = await client.remove_background(staged.url)  # the emulator GETs the link
        location = await client.download_with(cutout, lambda chunks: sink.store(item, chunks))
    assert emu.stats.credits_charged == 1
    assert location == f"s3://{s3.bucket}/cutouts/shoe.png"
    assert s3.read("cutouts/shoe.png").startswith(b"\x89PNG")

    await stager.unstage(staged)
    assert s3.keys() == ["cutouts/shoe.png"]
    await stager.unstage(staged)  # already gone: fine


async def test_the_same_bytes_are_uploaded_once_and_kept_while_staged(
    s3: S3, tmp_path: Path
) -> None:
    (tmp_path / "a.png").write_bytes(PNG)
    (tmp_path / "b.png").write_bytes(PNG)
    stager = Stager(s3.url("st/"), expires=60)
    first = await stager.stage(tmp_path / "a.png")
    # Mark the object: a second upload would replace it and lose the mark.
    s3.client.copy_object(
        Bucket=s3.bucket,
        Key=first.key,
        CopySource={"Bucket": s3.bucket, "Key": first.key},
        Metadata={"mark": "first"},
        MetadataDirective="REPLACE",
    )
    second = await stager.stage(tmp_path / "b.png")
    assert second.key == first.key
    assert s3.head(first.key)["Metadata"] == {"mark": "first"}
    assert expires_in(second.url) == 60
    await stager.unstage(first)
    assert s3.keys() == [first.key]  # b.png still needs it
    await stager.unstage(second)
    assert s3.keys() == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "is empty"),
        (b"%PDF-1.7\n" + b"0" * 100, r"is not a JPEG or PNG image \(it looks like a PDF\)"),
        (b"\xff\xd8\xff" + b"\0" * MAX_IMAGE_BYTES, "the service takes images up to 20 MB"),
    ],
    ids=["empty", "pdf-named-jpg", "21MB"],
)
async def test_bad_local_files_are_refused_before_any_upload(
    s3: S3, tmp_path: Path, content: bytes, message: str
) -> None:
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(content)
    with pytest.raises(InvalidRequestError, match=message) as caught:
        await Stager(s3.url("staging/")).stage(photo)
    assert str(photo) in str(caught.value)
    assert s3.keys() == []


async def test_a_missing_file_is_a_clear_refusal(s3: S3, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequestError, match=r"cannot read .*gone\.jpg"):
        await Stager(s3.url()).stage(tmp_path / "gone.jpg")
    with pytest.raises(InvalidRequestError, match="not a regular file"):
        await Stager(s3.url()).stage(tmp_path)
    os.mkfifo(tmp_path / "pipe.jpg")  # opening it would block
    with pytest.raises(InvalidRequestError, match=r"pipe\.jpg is not a regular file"):
        await Stager(s3.url()).stage(tmp_path / "pipe.jpg")
    assert s3.keys() == []


def test_staging_needs_a_store_that_can_presign(tmp_path: Path) -> None:
    for url in ("memory://", f"file://{tmp_path}/"):
        with pytest.raises(ConfigurationError, match=r"s3://, gs:// or az://"):
            Stager(url)
    with pytest.raises(ConfigurationError, match="1 s to 7 days"):
        Stager("s3://bucket/", expires=8 * 24 * 3600)


def tree(root: Path, *files: str) -> None:
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(PNG)


def test_walk_finds_images_recursively_in_a_stable_order(tmp_path: Path) -> None:
    tree(tmp_path, "b.jpg", "A.PNG", "notes.txt", "shoes/red.JPEG", "shoes/z/deep.png", "c.gif")
    tree(tmp_path, ".git/logo.png", ".hidden.png", "shoes/._red.jpg")  # hidden: left out
    found = [p.relative_to(tmp_path).as_posix() for p in walk_images(tmp_path)]
    assert found == ["A.PNG", "b.jpg", "shoes/red.JPEG", "shoes/z/deep.png"]
    assert list(walk_images(tmp_path)) == list(walk_images(tmp_path))


def test_walk_survives_symlink_loops(tmp_path: Path) -> None:
    tree(tmp_path, "a/one.jpg", "a/b/two.png")
    (tmp_path / "a" / "b" / "up").symlink_to(tmp_path / "a", target_is_directory=True)
    (tmp_path / "a" / "self.jpg").symlink_to(tmp_path / "a" / "self.jpg")  # ELOOP
    (tmp_path / "a" / "dangling.png").symlink_to(tmp_path / "nowhere.png")
    found = [p.relative_to(tmp_path).as_posix() for p in walk_images(tmp_path)]
    assert found == ["a/one.jpg", "a/b/two.png"]


@pytest.mark.skipif(sys.platform != "linux", reason="bytes file names are a Linux thing")
def test_walk_and_names_tolerate_file_names_that_are_not_utf8(tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    raw = os.path.join(os.fsencode(folder), b"caf\xe9 cr\xe8me.JPG")
    with open(raw, "wb") as fh:
        fh.write(PNG)
    (found,) = walk_images(folder)
    assert os.fsencode(found) == raw
    assert found.read_bytes() == PNG
    assert relative_output_name(found, folder) == "caf%E9 cr%E8me.png"


def test_output_names_keep_the_folders_and_stay_inside() -> None:
    assert relative_output_name("photos/shoes/red.jpg", "photos") == "shoes/red.png"
    assert relative_output_name("photos/a.b.jpeg", "photos", ".webp") == "a.b.webp"
    assert relative_output_name("/r/x/\u00e9t\u00e9\tnew.png", "/r") == "x/\u00e9t\u00e9_new.png"
    for path, root in [("other/x.jpg", "photos"), ("photos/../x.jpg", "photos"), ("p", "p")]:
        with pytest.raises(ValueError, match=r"photos|inside"):
            relative_output_name(path, root)
