"""FDRL hyper-parameters in one typed, JSON-serialisable place (FDRL_SPEC.md Part 1 defaults)."""

from __future__ import annotations

import json
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from fdrl_core.labels import IEMOCAP4, LabelSet

MODALITIES = ("speech", "text")
SPEECH_NORMS = ("none", "utterance", "utterance_std", "speaker", "speaker_std")


@dataclass
class FDRLConfig:
    # inputs: Whisper tiny.en encoder frames and MiniLM token states are both 384-d
    speech_dim: int = 384
    text_dim: int = 384
    max_speech_frames: int = 1500  # 30 s at 50 frames/s: one Whisper window
    max_text_tokens: int = 128
    # average non-overlapping windows of this many Whisper frames (20 ms each) before the projection:
    # 4 -> 80 ms steps, 4x less compute in every per-frame component; 1 keeps 20 ms frames
    speech_pool: int = 4
    # "utterance": subtract each utterance's mean speech frame before the model (removes constant voice and
    # channel offsets, keeps the movements within the utterance) | "utterance_std" (also unit spread per
    # dimension) | "speaker": subtract a running reference frame of the speaker/stream (their previous
    # utterances, forgetting by speaker_decay per utterance, pooled with the current one; the first utterance
    # of a stream gets its own mean). That reference is stream state, so it is applied OUTSIDE the graph
    # (fdrl_core.speaker_norm: train.data, train evaluate, stream.emotion) and the model removes nothing
    # itself | "speaker_std" (also unit pooled spread per dimension) | "none"
    speech_norm: str = "none"
    speaker_decay: float = 0.7  # speech_norm="speaker*": weight of an utterance one step older
    speaker_context: int = 8  # speech_norm="speaker*", training: pool 0..this many other utterances of the speaker

    # model width and encoders
    d_model: int = 256
    encoder: str = "mlp"  # "mlp" (position-wise, the fine-grained analogue of MISA) | "transformer"
    encoder_layers: int = 1  # only for encoder="transformer"
    # "separate": each encoder has its own input projection and no residual from its input (they start
    # unrelated); "legacy": LN(h + MLP(h)), the layout of checkpoints from before issue 11
    encoder_arch: str = "separate"
    heads: int = 4
    fusion_heads: int = 2
    dropout: float = 0.1

    # which modalities the model may use; ("speech",) / ("text",) are the single-branch baselines
    modalities: tuple[str, ...] = MODALITIES

    # fine-grained alignment: "A" adversarial (gradient reversal) | "B" cross-attention
    align_variant: str = "A"
    # loss weights: L = cls + align_weight*align + disp_weight*disp + pred_weight*pred; 0 disables
    align_weight: float = 0.1
    disp_weight: float = 0.1
    pred_weight: float = 0.5
    orth_cross: bool = True  # also decorrelate speech-private from text-private (pooled, over batch)
    pred_granularity: str = "frame"  # "frame": per frame/token logits, masked mean | "pooled": pool first

    # variant A's adversary: "confusion" (discriminator on detached frames, encoder pushed to 0.5/0.5) |
    # "grl" (gradient reversal, which flips the discriminator rather than confusing it; for ablations)
    adversary: str = "confusion"
    # gradient reversal coefficient (adversary="grl"): "dann" ramps 0 -> grl_lambda with training progress
    grl_schedule: str = "dann"
    grl_lambda: float = 1.0

    # probability of hiding the text of a training item, so the "no text" path is learned
    text_dropout: float = 0.1
    # probability of hiding the speech of a training item that has text (the words-only path is learned too)
    speech_dropout: float = 0.0
    # probability of hiding each token state of a training item (word dropout)
    word_dropout: float = 0.1

    labels: LabelSet = field(default_factory=lambda: IEMOCAP4)

    def __post_init__(self):
        self.modalities = tuple(self.modalities)
        if isinstance(self.labels, dict):
            self.labels = LabelSet.from_dict(self.labels)
        checks = [
            (min(self.speech_dim, self.text_dim, self.max_speech_frames, self.max_text_tokens, self.d_model,
                 self.encoder_layers, self.heads, self.fusion_heads) >= 1,
             "dimensions, lengths, layers and heads must be >= 1"),
            (0 <= self.dropout < 1, "dropout must be in [0, 1)"),
            (self.encoder in ("mlp", "transformer"), f"encoder must be 'mlp' or 'transformer', not {self.encoder!r}"),
            (self.align_variant in ("A", "B"), f"align_variant must be 'A' or 'B', not {self.align_variant!r}"),
            (self.grl_schedule in ("dann", "constant"), "grl_schedule must be 'dann' or 'constant'"),
            (self.encoder_arch in ("separate", "legacy"), "encoder_arch must be 'separate' or 'legacy'"),
            (self.adversary in ("confusion", "grl"), "adversary must be 'confusion' or 'grl'"),
            (self.pred_granularity in ("frame", "pooled"), "pred_granularity must be 'frame' or 'pooled'"),
            (bool(self.modalities) and set(self.modalities) <= set(MODALITIES),
             f"modalities must be a non-empty subset of {MODALITIES}, not {self.modalities}"),
            (self.d_model % self.heads == 0 and self.d_model % self.fusion_heads == 0,
             "d_model must be divisible by heads and fusion_heads"),
            (min(self.align_weight, self.disp_weight, self.pred_weight) >= 0, "loss weights must be >= 0"),
            (0 <= self.text_dropout < 1, "text_dropout must be in [0, 1)"),
            (0 <= self.word_dropout < 1, "word_dropout must be in [0, 1)"),
            (0 <= self.speech_dropout < 1, "speech_dropout must be in [0, 1)"),
            (self.speech_pool >= 1, "speech_pool must be >= 1"),
            (self.speech_norm in SPEECH_NORMS, f"speech_norm must be one of {SPEECH_NORMS}, not {self.speech_norm!r}"),
            (0 <= self.speaker_decay < 1, "speaker_decay must be in [0, 1)"),
            (self.speaker_context >= 0, "speaker_context must be >= 0"),
        ]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"FDRLConfig: {msg}")

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["modalities"] = list(self.modalities)
        d["labels"] = self.labels.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> FDRLConfig:
        """Checked field by field, so a bad value is reported as "field 'd_model': expected an integer,
        got 'banana'" rather than whatever the first arithmetic on it raises."""
        if not isinstance(d, dict):
            raise ValueError(f"expected a JSON object of config fields, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"FDRLConfig: unknown keys {unknown} (config from a newer version?)")
        d = dict(d)
        # configs written before these keys existed describe the older layout and losses
        d.setdefault("encoder_arch", "legacy")
        d.setdefault("adversary", "grl")
        d.setdefault("word_dropout", 0.0)
        d.setdefault("speech_pool", 1)
        hints = typing.get_type_hints(cls)
        return cls(**{k: _checked(k, v, hints[k]) for k, v in d.items()})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> FDRLConfig:
        try:
            d = json.loads(text)
        except json.JSONDecodeError as e:
            raise ValueError(f"line {e.lineno} column {e.colno}: not valid JSON ({e.msg})") from None
        return cls.from_dict(d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path) -> FDRLConfig:
        """From a config.json; errors name the file (and line or field)."""
        path = Path(path)
        try:
            return cls.from_json(path.read_text(encoding="utf-8"))
        except UnicodeDecodeError as e:
            raise ValueError(f"{path}: not UTF-8 text (byte {e.start})") from None
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None


def _checked(name: str, value, hint):
    """`value` if it fits the field's type (ints are accepted for floats, lists for tuples)."""
    def bad(expected: str):
        return ValueError(f"field {name!r}: expected {expected}, got {value!r}")

    if hint is bool:
        if not isinstance(value, bool):
            raise bad("true or false")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise bad("a number")
        return float(value)
    elif hint is str:
        if not isinstance(value, str):
            raise bad("a string")
    elif typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)) or not all(isinstance(x, str) for x in value):
            raise bad("a list of strings")
    elif hint is LabelSet:
        if not isinstance(value, (dict, LabelSet)):
            raise bad("a label set object {name, classes, aliases}")
        if isinstance(value, dict):
            try:
                return LabelSet.from_dict(value)
            except ValueError as e:
                raise ValueError(f"field {name!r}: {e}") from None
    return value
