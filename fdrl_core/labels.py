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
        """Checked: a missing or mistyped field is named (ValueError)."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object {{name, classes, aliases}}, got {type(d).__name__}")
        for key in ("name", "classes"):
            if key not in d:
                raise ValueError(f"missing field {key!r}")
        if not isinstance(d["name"], str):
            raise ValueError(f"field 'name': expected a string, got {d['name']!r}")
        classes = d["classes"]
        if not isinstance(classes, (list, tuple)) or not all(isinstance(c, str) for c in classes):
            raise ValueError(f"field 'classes': expected a list of strings, got {classes!r}")
        aliases = d.get("aliases", {})
        if not isinstance(aliases, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in aliases.items()):
            raise ValueError(f"field 'aliases': expected an object of strings, got {aliases!r}")
        return cls(name=d["name"], classes=tuple(classes), aliases=dict(aliases))

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> LabelSet:
        """From a labels.json; errors name the file (and line or field)."""
        path = Path(path)
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text (byte {e.start})") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path} line {e.lineno} column {e.colno}: not valid JSON ({e.msg})") from None
        try:
            return cls.from_dict(d)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None


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
