"""training/photos.py without network: the Qt rcc reader, the doc's glob patterns, the bundled photos."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from training.photos import (
    PACKAGES,
    RccBundle,
    RccError,
    bundled_photos,
    cache_name,
    cached_photos,
    copy_photos,
    fetch_package,
    match_any,
    rcc_pattern_split,
    selection,
)


def _rcc_hash(name: str) -> int:
    # Qt's qt_hash over UTF-16 code units; the reader ignores it, but a real bundle carries it.
    h = 0
    for unit in struct.unpack(f">{len(name)}H", name.encode("utf-16-be")):
        h = ((h << 4) + unit) & 0xFFFFFFFF
        h ^= (h & 0xF0000000) >> 23
        h &= 0x0FFFFFFF
    return h


def build_rcc(files: dict[str, tuple[bytes, bool]], version: int = 3) -> bytes:
    """A binary Qt resource bundle holding files {"dir/name": (bytes, zlib-compressed?)} (one directory level)."""
    names = bytearray()
    name_at: dict[str, int] = {}

    def name(text: str) -> int:
        if text not in name_at:
            name_at[text] = len(names)
            names.extend(struct.pack(">HI", len(text), _rcc_hash(text)) + text.encode("utf-16-be"))
        return name_at[text]

    payloads = bytearray()
    directories: dict[str, list[tuple[str, bytes, bool]]] = {}
    for path, (data, compressed) in files.items():
        folder, leaf = path.split("/")
        directories.setdefault(folder, []).append((leaf, data, compressed))
    stamp = b"\0" * 8 if version >= 2 else b""
    # Node 0 the root, 1.. the directories, then each directory's files.
    nodes = [struct.pack(">IHII", 0, 0x02, len(directories), 1) + stamp]
    file_nodes: list[bytes] = []
    first = 1 + len(directories)
    for folder, entries in directories.items():
        nodes.append(struct.pack(">IHII", name(folder), 0x02, len(entries), first + len(file_nodes)) + stamp)
        for leaf, data, compressed in entries:
            body = struct.pack(">I", len(data)) + zlib.compress(data) if compressed else data
            file_nodes.append(struct.pack(">IHHHI", name(leaf), 0x01 if compressed else 0, 0, 1, len(payloads))
                              + stamp)  # fmt: skip
            payloads.extend(struct.pack(">I", len(body)) + body)
    tree = b"".join(nodes + file_nodes)
    header_size = 24 if version >= 3 else 20
    tree_at = header_size
    payload_at = tree_at + len(tree)
    names_at = payload_at + len(payloads)
    header = b"qres" + struct.pack(">4I", version, tree_at, payload_at, names_at)
    if version >= 3:
        header += struct.pack(">I", 0)
    return header + tree + bytes(payloads) + bytes(names)


@pytest.mark.parametrize("version", [1, 2, 3])
def test_rcc_reader_extracts_compressed_and_plain_entries(tmp_path: Path, version: int) -> None:
    packed = bytes(range(256)) * 40  # compressible, so the zlib entry is really compressed
    plain = b"\x89PNG not really, but bytes kept as they are \x00\xff"
    path = tmp_path / "x.rcc"
    path.write_bytes(build_rcc({"resource/a.bin": (packed, True), "resource/b.txt": (plain, False)}, version))
    bundle = RccBundle.open(path)
    assert bundle.version == version
    assert sorted(bundle.files()) == ["resource/a.bin", "resource/b.txt"]
    assert bundle.read("resource/a.bin") == packed
    assert bundle.read("/resource/b.txt") == plain
    assert dict(bundle.items()) == {"resource/a.bin": packed, "resource/b.txt": plain}
    with pytest.raises(KeyError):
        bundle.read("resource/c")


def test_rcc_reader_rejects_other_files() -> None:
    with pytest.raises(RccError):
        RccBundle(b"PK\x03\x04" + b"\0" * 40)
    with pytest.raises(RccError):
        RccBundle(b"qres" + struct.pack(">4I", 9, 24, 24, 24) + b"\0" * 8)


def test_doc_patterns_match_the_listed_paths() -> None:
    patterns = {p.name: p.patterns for p in PACKAGES}
    opencv = patterns["opencv-doc"]
    text = "usr/share/doc/opencv-doc/examples/text/"
    assert [n for n in range(7) if match_any(f"{text}scenetext0{n}.jpg", opencv)] == [1, 2, 3, 4, 5]
    assert match_any("usr/share/doc/opencv-doc/examples/data/baboon.jpg", opencv)
    assert not match_any("usr/share/doc/opencv-doc/examples/data/lena.jpg", opencv)
    palapeli = patterns["palapeli-data"]
    assert match_any("usr/share/palapeli/collection/castle-maintenon.jpg", palapeli)
    assert not match_any("usr/share/palapeli/collection/sub/castle.jpg", palapeli)  # "*" stays in one folder
    assert not match_any("usr/share/palapeli/collection/castle.desktop", palapeli)
    jxl = patterns["libjxl-testdata"]
    assert match_any("usr/share/libjxl-testdata/external/wesaturate/500px/tmshre_riaphotographs_srgb8.png", jxl)
    assert not match_any("usr/share/libjxl-testdata/external/wesaturate/500px/tmshre_riaphotographs_alpha.png", jxl)

    gcompris = patterns["gcompris-qt-data"]
    assert rcc_pattern_split(gcompris[0]) == ("erase", "erase/**/resource/*.webp")
    assert rcc_pattern_split("usr/share/x.jpg") is None
    inner = [rcc_pattern_split(p)[1] for p in gcompris]  # type: ignore[index]
    erase = "erase/gcompris/src/activities/erase/resource/"
    assert match_any(erase + "gorilla.webp", inner)
    assert match_any("erase/resource/gorilla.webp", inner)  # "**/" also matches no folder at all
    assert not match_any(erase + "gorilla.svg", inner)
    monuments = "explore_monuments/gcompris/src/activities/explore_monuments/resource/"
    assert match_any(monuments + "usa/navajo.webp", inner)
    assert not match_any(monuments + "navajo.webp", inner)  # the pattern wants one folder below resource/
    farm = "explore_farm_animals/gcompris/src/activities/explore_farm_animals/resource/"
    assert match_any(farm + "animals/cow.webp", inner)
    assert not match_any(farm + "board/cow.webp", inner)
    sea = "clickgame/gcompris/src/activities/clickgame/resource/"
    assert match_any(sea + "sea6.webp", inner)
    assert not match_any(sea + "bubble.webp", inner) and not match_any(sea + "sea7.webp", inner)
    assert match_any("explore_world_music/gcompris/src/activities/explore_world_music/resource/music/japan.webp", inner)
    assert cache_name("usr/share/a/b.jpg") == "usr__share__a__b.jpg"


def test_package_list_matches_the_doc() -> None:
    # The shared list's 152 photos, plus the 38 training-photos.md adds: 13 in gcompris-qt-data, 1 in digikam-data
    # and 24 wallpapers.
    assert sum(p.expected for p in PACKAGES) == 152 + 14 + 24
    assert sum(p.expected for p in PACKAGES if p.name != "gnome-backgrounds") == 146 + 14 + 24
    assert {p.name: p.expected for p in PACKAGES}["gcompris-qt-data"] == 96 + 13
    assert {p.name: p.version for p in PACKAGES}["qtbase5-examples"] == "5.15.8+dfsg-11+deb12u3"


def test_wallpapers_are_one_photo_per_path_and_mate_backgrounds_stays_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # One photo per listed path (no size variants of one wallpaper); never mate-backgrounds (photos.py says why).
    from training import photos

    assert "mate-backgrounds" not in {p.name for p in PACKAGES}
    wallpapers = [p for p in PACKAGES if p.name.startswith(("lomiri-wallpapers", "plasma-workspace-wallpapers"))]
    assert sum(p.expected for p in wallpapers) == 24
    for package in wallpapers:
        assert len(set(package.patterns)) == len(package.patterns) == package.expected
        assert not any(c in pattern for pattern in package.patterns for c in "*?[")
    # --list reads the cache folder and --to copies what is there.
    monkeypatch.setenv("IQA_TRAINING_CACHE", str(tmp_path / "photos"))
    folder = tmp_path / "photos" / "plasma-workspace-wallpapers"
    folder.mkdir(parents=True)
    Image.new("RGB", (400, 300), (90, 120, 200)).save(folder / "usr__share__wallpapers__Kite.jpg", quality=95)
    (folder / photos.MARKER).write_text('{"package": "plasma-workspace-wallpapers", "kept": 1}')
    assert photos.main(["--list", "--to", str(tmp_path / "set")]) == 0
    assert [p.name for p in (tmp_path / "set").iterdir()] == [
        "plasma-workspace-wallpapers__usr__share__wallpapers__Kite.jpg"
    ]
    assert copy_photos([], tmp_path / "empty") == [] and (tmp_path / "empty").is_dir()


def test_bundled_photos_are_readable_pngs(tmp_path: Path) -> None:
    photos = bundled_photos(tmp_path / "bundled")
    examples = [p for p in photos if p.source == "bundled-examples"]
    assert sorted(p.name for p in examples) == ["astronaut", "chelsea", "coffee", "flower", "rocket"]
    assert all(p.source.startswith("bundled-") for p in photos)
    for photo in photos:
        assert photo.path.suffix == ".png" and photo.path.parent == tmp_path / "bundled"
        with Image.open(photo.path) as image:
            image.load()
            assert image.format == "PNG" and min(image.size) >= 256


def test_cached_photos_lists_only_finished_packages(tmp_path: Path) -> None:
    done, partial = tmp_path / "pkg-a", tmp_path / "pkg-b"
    for folder in (done, partial):
        folder.mkdir()
        Image.new("RGB", (300, 280), "gray").save(folder / "usr__a.png")
    Image.new("RGB", (300, 100), "gray").save(done / "usr__small.png")  # short side under 256
    (done / "usr__broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    (done / "copyright").write_text("License: CC0-1.0\n")
    (done / ".done").write_text("{}")
    photos = cached_photos(tmp_path)
    assert [(p.source, p.name) for p in photos] == [("pkg-a", "usr__a.png")]
    assert photos[0].licence_file == str(done / "copyright")


def test_a_cached_package_is_fetched_again_when_its_selection_changed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A path added to a package's list must reach caches filled before: the marker records what was asked for.
    from training import photos

    package = photos.Package("pkg-a", "1.0", ("usr/share/a/*.jpg",))
    folder = tmp_path / "pkg-a"
    folder.mkdir()
    downloads: list[str] = []

    def no_network(pkg: photos.Package, workdir: Path, options: list[str]) -> tuple[Path, str]:
        downloads.append(pkg.name)
        raise RuntimeError("no network in tests")

    monkeypatch.setattr(photos, "apt_download", no_network)
    (folder / photos.MARKER).write_text(
        json.dumps({"package": "pkg-a", "version": "1.0", "kept": 3, "selection": selection(package)})
    )
    assert fetch_package(package, tmp_path, tmp_path, {}).kept == 3 and downloads == []
    wider = photos.Package("pkg-a", "1.0", ("usr/share/a/*.jpg", "usr/share/b/*.jpg"))
    assert fetch_package(wider, tmp_path, tmp_path, {}).error == "no network in tests"
    (folder / photos.MARKER).write_text('{"package": "pkg-a", "kept": 3}')  # a marker written before selections
    fetch_package(package, tmp_path, tmp_path, {})
    assert downloads == ["pkg-a", "pkg-a"]
