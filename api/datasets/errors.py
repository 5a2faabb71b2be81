"""What a rejected upload says: a status, a summary, and each problem with its location."""

from __future__ import annotations

from dataclasses import dataclass

# How many individual problems (bad cells, bad images, ...) a rejection lists.
MAX_LISTED = 10


@dataclass(frozen=True)
class Issue:
    loc: str  # the form field the problem is in: `file`, `label_column`, `image_size`, ...
    msg: str
    type: str


class DatasetRejected(Exception):
    def __init__(
        self,
        issues: list[Issue],
        *,
        status: int = 422,
        title: str = "Invalid dataset",
        detail: str | None = None,
    ) -> None:
        self.issues, self.status, self.title = issues, status, title
        self.detail = detail or "; ".join(f"{i.loc}: {i.msg}" for i in issues[:5])
        super().__init__(self.detail)


def reject(loc: str, msg: str, type_: str, *, status: int = 422) -> DatasetRejected:
    return DatasetRejected([Issue(loc, msg, type_)], status=status)


class Collector:
    """Gathers up to MAX_LISTED problems of one kind, counting the rest."""

    def __init__(self, loc: str, type_: str) -> None:
        self.loc, self.type, self.issues, self.count = loc, type_, list[Issue](), 0

    def add(self, msg: str) -> None:
        self.count += 1
        if len(self.issues) < MAX_LISTED:
            self.issues.append(Issue(self.loc, msg, self.type))

    def __bool__(self) -> bool:
        return self.count > 0

    def raise_if_any(self, summary: str) -> None:
        if not self.count:
            return
        more = self.count - len(self.issues)
        issues = list(self.issues)
        if more > 0:
            issues.append(Issue(self.loc, f"... and {more} more like these", self.type))
        raise DatasetRejected(issues, detail=f"{summary} ({self.count} in all)")
