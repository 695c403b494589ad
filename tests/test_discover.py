"""Tests for file discovery: order, filters, hidden files, links and problems."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

from iqa_cli.audit.braces import expand_braces, has_braces
from iqa_cli.audit.discover import IMAGE_EXTENSIONS, DiscoveryProblem, discover, discover_with_roots, missing_given
from iqa_cli.testing.cli import invoke_iqa
from tests.test_containers import _image


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


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("shards/{00000..00003}.tar", ["shards/00000.tar", "shards/00001.tar", "shards/00002.tar", "shards/00003.tar"]),
        ("{08..11}", ["08", "09", "10", "11"]),
        ("{0..10..5}", ["0", "5", "10"]),
        ("{3..1}", ["3", "2", "1"]),
        ("{a..e..2}", ["a", "c", "e"]),
        ("{train,val}/{1,2}.jpg", ["train/1.jpg", "train/2.jpg", "val/1.jpg", "val/2.jpg"]),
        ("x{,-small}.jpg", ["x.jpg", "x-small.jpg"]),
        ("{a,b{1,2}}c", ["ac", "b1c", "b2c"]),
        ("plain{}/{a}/{unclosed", ["plain{}/{a}/{unclosed"]),
    ],
)
def test_brace_patterns_expand_as_a_shell_would(pattern: str, expected: list[str]) -> None:
    assert list(expand_braces(pattern)) == expected
    assert has_braces(pattern) == (expected != [pattern])


def test_a_brace_range_is_expanded_lazily() -> None:
    patterns = expand_braces("{0..999999999999}.tar")
    assert [next(patterns), next(patterns)] == ["0.tar", "1.tar"]


def test_a_pattern_given_stands_for_each_of_its_paths_in_order(tmp_path: Path) -> None:
    touch(tmp_path, "shards/00000.tar", "shards/00002.tar", "odd{1,2}.jpg")
    given = [f"{tmp_path}/shards/{{00000..00002}}.tar", f"{tmp_path}/odd{{1,2}}.jpg"]
    found = list(discover_with_roots(given, containers=True))
    assert [root for root, _ in found] == [given[0]] * 3 + [given[1]]
    items = [item for _, item in found]
    assert items[0] == tmp_path / "shards/00000.tar" and items[2] == tmp_path / "shards/00002.tar"
    assert isinstance(items[1], DiscoveryProblem) and items[1].code == "not_found"
    assert items[1].path == str(tmp_path / "shards/00001.tar")
    assert items[3] == tmp_path / "odd{1,2}.jpg"  # a file of that very name is used as written


def test_missing_given_expands_patterns_and_stops_at_the_first_that_exists(tmp_path: Path) -> None:
    touch(tmp_path, "s/00007.tar")
    assert missing_given([f"{tmp_path}/s/{{00000..00099}}.tar"]) is None
    message = missing_given([f"{tmp_path}/none/{{00000..00099}}.tar"], shown_at_most=2)
    assert message == f"{tmp_path}/none/00000.tar, {tmp_path}/none/00001.tar and 98 more"
    assert missing_given(["https://example.com/{a,b}.jpg"]) is None  # a URL is looked at only when walked


def test_patterns_on_the_command_line_and_in_a_list(tmp_path: Path) -> None:
    for name in ("p/1.png", "p/2.png", "q/1.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(_image("PNG", len(name)))
    listed = tmp_path / "list.txt"
    listed.write_text(f"{tmp_path}/q/{{1..2}}.png\n")
    out = tmp_path / "out"
    code, _, stderr = invoke_iqa(
        "audit", f"{tmp_path}/p/{{1,2}}.png", "--from-file", str(listed), "--engine", "signal", "--out", str(out)
    )
    assert code == 0, stderr
    report = pd.read_parquet(out / "report.parquet")
    assert list(report["path"]) == [str(tmp_path / n) for n in ("p/1.png", "p/2.png", "q/1.png", "q/2.png")]
    assert list(report["error_code"].fillna("")) == ["", "", "", "not_found"]
    code, _, stderr = invoke_iqa("audit", f"{tmp_path}/r/{{1..3}}.png", "--out", str(out))
    assert code == 2
    assert f"no such file or folder: {tmp_path}/r/1.png, {tmp_path}/r/2.png, {tmp_path}/r/3.png;" in stderr
