"""Duplicate groups for the page: exact copies (`duplicate_of`) and near copies (iqa-dupes' findings), bounded."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from iqa_cli.report.summary import LISTED

GROUPS_LISTED = LISTED  # groups of each kind, as iqa's terminal summary lists them
COPIES_LISTED = 20  # copies named in each group; the others are counted
# Paths remembered to join a near copy of a near copy to its group (A <- B <- C is one group), over
# all listed groups; a copy of a copy beyond it starts a group of its own (or is counted).
NEAR_TRACKED = 2000

# What iqa-dupes writes in a row's `findings` (see plugins/iqa-dupes): the image names the closest
# earlier one. Matched to the end, so a path that itself holds " (hash distance 1)" stays whole.
_NEAR = re.compile(r"near-duplicate/near_copy: looks like (?P<path>.+) \(hash distance (?P<distance>\d+)\)", re.S)


@dataclass(slots=True)
class Member:
    """A file of a group as the page lists it."""

    path: str  # the schema's text of the name
    file_name: str | None = None  # the name to open where `path` is not it (a non-UTF-8 name's exact bytes)
    note: str = ""  # "first", or how close a near copy is
    href: str | None = None  # set when the page is written, for regular files only


@dataclass(slots=True)
class Group:
    """The first file and the copies of it (listed up to COPIES_LISTED, the rest counted)."""

    first: Member
    copies: list[Member] = field(default_factory=list)
    more: int = 0

    def add(self, member: Member) -> None:
        if len(self.copies) < COPIES_LISTED:
            self.copies.append(member)
        else:
            self.more += 1

    @property
    def size(self) -> int:
        return 1 + len(self.copies) + self.more


@dataclass
class Duplicates:
    """Counts over every row, and the first GROUPS_LISTED groups of each kind."""

    exact_copies: int = 0  # rows whose bytes an earlier row of the run had
    near_copies: int = 0  # rows iqa-dupes found looking like an earlier one
    exact: dict[str, Group] = field(default_factory=dict)  # by the first file's path, in order found
    near: list[Group] = field(default_factory=list)
    exact_unlisted: int = 0  # copies outside the listed groups
    near_unlisted: int = 0
    # The paths of the listed near groups (up to NEAR_TRACKED), to find the group of a copy of a copy.
    _near_of: dict[str, Group] = field(default_factory=dict, init=False, repr=False)

    def add(self, path: str, file_name: str | None, duplicate_of: str | None, findings: list[str]) -> None:
        """One row: its path, the exact name where that differs, its `duplicate_of` and `findings`."""
        if duplicate_of:
            self.exact_copies += 1
            group = self.exact.get(duplicate_of)
            if group is None and len(self.exact) < GROUPS_LISTED:
                group = self.exact[duplicate_of] = Group(Member(duplicate_of, note="first"))
            if group is None:
                self.exact_unlisted += 1
            else:
                group.add(Member(path, file_name))
        for finding in findings:
            near = _NEAR.fullmatch(finding)
            if near is not None:
                self._add_near(path, file_name, near["path"], int(near["distance"]))
                break  # iqa-dupes names one closest image per row

    def _add_near(self, path: str, file_name: str | None, like: str, distance: int) -> None:
        self.near_copies += 1
        group = self._near_of.get(like)
        if group is None and len(self.near) < GROUPS_LISTED:
            group = Group(Member(like, note="first"))
            self.near.append(group)
            self._track(like, group)
        if group is None:
            self.near_unlisted += 1
            return
        # A copy of a copy says which one it resembles: the distance is to that one, not to the first.
        note = f"hash distance {distance}" if like == group.first.path else f"hash distance {distance} to {like}"
        group.add(Member(path, file_name, note))
        self._track(path, group)

    def _track(self, path: str, group: Group) -> None:
        if len(self._near_of) < NEAR_TRACKED:
            self._near_of.setdefault(path, group)

    def members(self) -> list[Member]:
        """Every listed file, to link when the page is written."""
        groups = [*self.exact.values(), *self.near]
        return [member for group in groups for member in (group.first, *group.copies)]
