"""Tests for file discovery: order, filters, hidden files, links and problems."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from iqa_cli.audit.discover import IMAGE_EXTENSIONS, DiscoveryProblem, discover


def touch(root: Path, *names: str) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x")


def found(paths, root: Path | None = None, **kwargs) -> list[str]:
    """The yielded files as paths relative to `root` (posix), failing on any problem."""
    out = []
    for item in discover(paths, **kwargs):
        assert not isinstance(item, DiscoveryProblem), item
        out.append(item.relative_to(root).as_posix() if root else str(item))
    return out


def problems(paths, **kwargs) -> list[DiscoveryProblem]:
    return [item for item in discover(paths, **kwargs) if isinstance(item, DiscoveryProblem)]


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    touch(
        tmp_path,
        "b.jpg",
        "a.PNG",
        "notes.txt",
        "c.JpEg",
        "sub/z.webp",
        "sub/deeper/y.tiff",
        "sub/a.gif",
        "alpha/x.bmp",
        ".hidden.jpg",
        ".cache/thumb.jpg",
        "@eaDir/a.jpg",
    )
    return tmp_path


def test_order_files_before_subfolders_sorted(tree: Path) -> None:
    # Code-point order: "@" sorts before letters, upper case before lower case.
    assert found([tree], tree) == [
        "a.PNG",
        "b.jpg",
        "c.JpEg",
        "@eaDir/a.jpg",
        "alpha/x.bmp",
        "sub/a.gif",
        "sub/z.webp",
        "sub/deeper/y.tiff",
    ]


def test_is_lazy(tree: Path) -> None:
    walker = discover([tree])
    assert iter(walker) is walker
    assert isinstance(next(walker), Path)


def test_not_recursive(tree: Path) -> None:
    assert found([tree], tree, recursive=False) == ["a.PNG", "b.jpg", "c.JpEg"]


def test_hidden(tree: Path) -> None:
    names = found([tree], tree, include_hidden=True)
    assert ".hidden.jpg" in names and ".cache/thumb.jpg" in names
    # A hidden folder given explicitly is walked.
    assert found([tree / ".cache"], tree) == [".cache/thumb.jpg"]


def test_extensions_case_insensitive_and_custom(tree: Path) -> None:
    assert {".jpg", ".jpeg", ".png", ".webp", ".tif", ".tiff", ".gif", ".bmp", ".avif"} <= IMAGE_EXTENSIONS
    assert found([tree], tree, extensions=["JPEG", ".Png"]) == ["a.PNG", "c.JpEg"]


def test_include_matches_name_or_relative_path(tree: Path) -> None:
    assert found([tree], tree, include=["*.gif", "sub/deeper/*"]) == ["sub/a.gif", "sub/deeper/y.tiff"]
    assert found([tree], tree, include=["A.*"]) == ["a.PNG", "@eaDir/a.jpg", "sub/a.gif"]


def test_exclude_files_and_prunes_folders(tree: Path) -> None:
    assert found([tree], tree, exclude=["@eaDir", "sub/deeper", "*.png"]) == [
        "b.jpg",
        "c.JpEg",
        "alpha/x.bmp",
        "sub/a.gif",
        "sub/z.webp",
    ]
    assert found([tree], tree, include=["*.jpg"], exclude=["b.*"]) == ["@eaDir/a.jpg"]


def test_explicit_file_always_yielded_once(tree: Path) -> None:
    assert found([tree / "notes.txt", tree / ".hidden.jpg"], tree) == ["notes.txt", ".hidden.jpg"]
    # Named and also inside a walked folder: once.
    assert found([tree / "b.jpg", tree], tree).count("b.jpg") == 1
    assert found([tree, tree / "b.jpg"], tree).count("b.jpg") == 1
    # Overlapping folders: each file once.
    assert found([tree / "sub", tree], tree).count("sub/a.gif") == 1


def test_missing_path_and_mixed_inputs(tree: Path) -> None:
    items = list(discover([tree / "nope", tree / "b.jpg"]))
    assert isinstance(items[0], DiscoveryProblem) and items[0].code == "not_found"
    assert items[0].path == str(tree / "nope")
    assert items[1] == tree / "b.jpg"


def test_symlink_loop_reported_and_not_followed(tmp_path: Path) -> None:
    touch(tmp_path, "a/one.jpg", "a/b/two.jpg")
    os.symlink(tmp_path / "a", tmp_path / "a/b/back")
    items = list(discover([tmp_path]))
    files = [i.relative_to(tmp_path).as_posix() for i in items if isinstance(i, Path)]
    assert files == ["a/one.jpg", "a/b/two.jpg"]
    loops = [i for i in items if isinstance(i, DiscoveryProblem)]
    assert [(p.code, p.path) for p in loops] == [("symlink_loop", str(tmp_path / "a/b/back"))]


def test_linked_folder_followed_and_yielded_once(tmp_path: Path) -> None:
    touch(tmp_path, "photos/2021/p.jpg", "elsewhere/e.jpg")
    os.symlink(tmp_path / "elsewhere", tmp_path / "photos/linked")
    os.symlink(tmp_path / "photos/2021", tmp_path / "photos/also2021")
    assert found([tmp_path / "photos"], tmp_path) == ["photos/2021/p.jpg", "photos/linked/e.jpg"]


def test_linked_file_yielded_once_by_real_path(tmp_path: Path) -> None:
    touch(tmp_path, "a/real.jpg", "c/other.jpg")
    (tmp_path / "z").mkdir()
    os.symlink(tmp_path / "a/real.jpg", tmp_path / "z/link.jpg")  # walked after a/ -> skipped
    os.symlink(tmp_path / "c/other.jpg", tmp_path / "0_link.jpg")  # walked before c/ -> kept
    os.symlink(tmp_path / "outside.jpg", tmp_path / "broken.jpg")
    os.symlink(tmp_path / "c/other.jpg", tmp_path / "1_link.jpg")  # a second link to the same file
    items = list(discover([tmp_path]))
    files = [i.relative_to(tmp_path).as_posix() for i in items if isinstance(i, Path)]
    assert files == ["0_link.jpg", "a/real.jpg"]  # c/other.jpg came first as 0_link.jpg
    assert [(p.code, Path(p.path).name) for p in items if isinstance(p, DiscoveryProblem)] == [
        ("broken_link", "broken.jpg")
    ]


def test_unreadable_folder_is_a_problem(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # chmod does not stop root, so refuse the listing itself.
    real_scandir = os.scandir

    def scandir(path):
        if Path(path).name == "sub":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    items = list(discover([tree]))
    bad = [i for i in items if isinstance(i, DiscoveryProblem)]
    assert [(p.code, p.path) for p in bad] == [("unreadable_dir", str(tree / "sub"))]
    assert "Permission denied" in bad[0].message
    assert tree / "alpha/x.bmp" in items  # the walk goes on


def test_not_a_file(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.jpg"
    os.mkfifo(fifo)
    assert [p.code for p in problems([fifo])] == ["not_a_file"]
    assert found([tmp_path]) == []  # special files in folders are skipped silently


def test_deep_tree_does_not_recurse(tmp_path: Path) -> None:
    deep = tmp_path
    for _ in range(1100):  # deeper than Python's recursion limit
        deep = deep / "d"
        deep.mkdir()
    (deep / "x.jpg").write_bytes(b"x")
    try:
        assert len(found([tmp_path])) == 1
    finally:
        # pytest's own clean-up recurses and would fail on this depth later: remove it bottom-up here.
        (deep / "x.jpg").unlink()
        while deep != tmp_path:
            deep.rmdir()
            deep = deep.parent


def test_links_out_of_their_folder_are_reported_without_follow_outside(tmp_path: Path) -> None:
    secret, photos = tmp_path / "secret", tmp_path / "photos"
    touch(secret, "key.jpg", "inner/deep.jpg")
    touch(photos, "a.jpg", "sub/b.jpg")
    os.symlink(secret / "key.jpg", photos / "stolen.jpg")  # a file outside
    os.symlink(secret / "inner", photos / "elsewhere")  # a folder outside
    os.symlink(photos / "sub" / "b.jpg", photos / "again.jpg")  # a link that stays inside
    (tmp_path / "lists").mkdir()
    os.symlink(secret / "key.jpg", tmp_path / "lists" / "listed.jpg")  # a listed path leading out of its folder
    # By default links are followed (the user's own folders).
    assert found([photos], photos) == ["a.jpg", "again.jpg", "stolen.jpg", "elsewhere/deep.jpg"]
    items = list(discover([photos, tmp_path / "lists" / "listed.jpg", photos / "a.jpg"], follow_outside=False))
    kept = [str(i) for i in items if not isinstance(i, DiscoveryProblem)]
    refused = {Path(i.path).name: i.code for i in items if isinstance(i, DiscoveryProblem)}
    assert kept == [str(photos / "a.jpg"), str(photos / "again.jpg")]  # b.jpg was yielded as again.jpg
    assert refused == {"stolen.jpg": "outside_folder", "elsewhere": "outside_folder", "listed.jpg": "outside_folder"}
