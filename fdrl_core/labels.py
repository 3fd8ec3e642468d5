"""Label sets are data: a checkpoint carries its own, and corpora map raw labels onto it."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class LabelSet:
    name: str
    classes: tuple[str, ...]
    # raw corpus label -> class name (e.g. IEMOCAP "exc" -> "happy"); unknown raw labels are dropped
    aliases: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        object.__setattr__(self, "classes", tuple(self.classes))
        if len(set(self.classes)) != len(self.classes) or len(self.classes) < 2:
            raise ValueError(f"label set {self.name!r} needs at least two distinct classes: {self.classes}")
        bad = {v for v in self.aliases.values() if v not in self.classes}
        if bad:
            raise ValueError(f"label set {self.name!r}: aliases point at unknown classes {sorted(bad)}")

    def __len__(self) -> int:
        return len(self.classes)

    def map(self, raw: str) -> str | None:
        """Class name for a raw label, or None when the label set does not use it."""
        if raw in self.classes:
            return raw
        return self.aliases.get(raw)

    def index(self, label: str) -> int:
        mapped = self.map(label)
        if mapped is None:
            raise KeyError(f"label {label!r} is not in label set {self.name!r} {list(self.classes)}")
        return self.classes.index(mapped)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["classes"] = list(self.classes)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> LabelSet:
        return cls(name=d["name"], classes=tuple(d["classes"]), aliases=dict(d.get("aliases", {})))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> LabelSet:
        return cls.from_dict(json.loads(Path(path).read_text()))


IEMOCAP4 = LabelSet(
    name="iemocap4",
    classes=("neutral", "happy", "angry", "sad"),
    aliases={"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad",
             "excited": "happy"},
)

IEMOCAP6 = LabelSet(
    name="iemocap6",
    classes=("neutral", "happy", "angry", "sad", "excited", "frustrated"),
    aliases={"neu": "neutral", "hap": "happy", "ang": "angry", "sad": "sad", "exc": "excited",
             "fru": "frustrated"},
)

LABEL_SETS = {ls.name: ls for ls in (IEMOCAP4, IEMOCAP6)}
