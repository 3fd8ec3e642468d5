"""Per-utterance cost of the three ways to finish an utterance, on the same audio, interleaved.

  ours      shared encoder pass -> decode -> emotion on the same encoder output -> publish
  separate  ours, but the emotion's speech frames come from a second encoder pass (what sharing saves)
  baseline  faster-whisper transcribe() + second encoder pass + PyTorch FDRL -> publish
  baseline_1thread  the baseline with torch limited to one thread, as ours: on a small CPU torch's default
            pool fights CTranslate2's spinning OpenMP threads; this variant shows what is left without that

Each utterance is run through all three back to back, in a rotating order, so load from other processes
hits every variant alike; ratios are taken per utterance and pass (paired), then summarised.
"""

from __future__ import annotations

import sys

import numpy as np

from bench.common import Clock, Cost, ratio, summary

VARIANTS = ("ours", "separate", "baseline", "baseline_1thread")
# the stages each variant pays for one utterance (the others are breakdowns of these)
TOTALS = {"ours": ("asr", "emotion", "publish"),
          "separate": ("asr", "second_encoder", "emotion"),
          "baseline": ("asr", "second_encoder", "emotion", "publish"),
          "baseline_1thread": ("asr", "second_encoder", "emotion", "publish")}
COMPUTE = {"ours": ("asr", "emotion"), "separate": ("asr", "second_encoder", "emotion"),
           "baseline": ("asr", "second_encoder", "emotion"), "baseline_1thread": ("asr", "second_encoder", "emotion")}


def _publish(publisher, msgs, uid: int, text: str, result, costs: dict[str, Cost]) -> Cost:
    with Clock() as c:
        msg = msgs.emotion(utterance_id=uid, start=0.0, end=0.0, partial=False, revision=1, transcript=text,
                           text_used=bool(text), text_dropped=None, label=result.label, scores=result.probs,
                           confidence=result.confidence, modalities=tuple(result.modalities),
                           asr_ms=costs["asr"].wall_ms, emotion_ms=costs["emotion"].wall_ms, eos_to_publish_ms=None,
                           model="bench-offline")
        publisher.send("emotion", msg)
    return c.cost


def _sum(costs: dict[str, Cost], keys) -> Cost:
    out = Cost()
    for k in keys:
        out = out + costs.get(k, Cost())
    return out


def compare(ours, naive, utterances: list[np.ndarray], passes: int, publisher, variants=VARIANTS) -> dict:
    """`utterances`: float32 16 kHz arrays. Returns summaries per variant and stage, and paired ratios."""
    from tqdm import tqdm

    from stream.messages import MessageFactory

    msgs = MessageFactory("bench-offline")
    runs: dict[str, list[dict[str, Cost]]] = {v: [] for v in variants}
    with tqdm(total=passes * len(utterances) * len(variants), desc="per-utterance cost", unit="pass",
              leave=False, file=sys.stderr) as bar:
        for p in range(passes):
            for i, audio in enumerate(utterances):
                k = (i + p) % len(variants)
                for v in variants[k:] + variants[:k]:
                    if v.startswith("baseline"):
                        costs, text, result = naive.process(audio, torch_threads=1 if v == "baseline_1thread" else None)
                    else:
                        costs, hyp, result = ours.final_pass(audio, second_encoder=v == "separate")
                        text = hyp.text
                    if v != "separate":
                        costs["publish"] = _publish(publisher, msgs, i, text, result, costs)
                    costs["total"] = _sum(costs, TOTALS[v])
                    costs["asr_emotion"] = _sum(costs, COMPUTE[v])
                    runs[v].append(costs)
                    bar.update()
    return summarise(runs)


def summarise(runs: dict[str, list[dict[str, Cost]]]) -> dict:
    out: dict = {"variants": {}, "paired": {}}
    for v, rows in runs.items():
        keys = list(dict.fromkeys(k for r in rows for k in r))
        out["variants"][v] = {k: {"wall_ms": summary(r[k].wall_ms for r in rows if k in r),
                                  "cpu_ms": summary(r[k].cpu_ms for r in rows if k in r)} for k in keys}
        out["variants"][v]["n"] = len(rows)

    def paired(a: str, b: str, key_a: str, key_b: str, what: str) -> dict:
        if a not in runs or b not in runs:
            return summary([])
        return summary(ratio(getattr(x[key_a], what), getattr(y[key_b], what)) for x, y in zip(runs[a], runs[b]))

    for what, unit in (("wall_ms", "wall"), ("cpu_ms", "cpu")):
        out["paired"][f"ours_over_baseline_{unit}"] = paired("ours", "baseline", "total", "total", what)
        out["paired"][f"ours_over_baseline_1thread_{unit}"] = paired("ours", "baseline_1thread", "total", "total", what)
        out["paired"][f"shared_over_separate_{unit}"] = paired("ours", "separate", "asr_emotion", "asr_emotion", what)
    s = out["paired"]["shared_over_separate_cpu"]["median"]
    w = out["paired"]["shared_over_separate_wall"]["median"]
    out["shared_encoder_saving"] = {"cpu": None if s is None else round(1 - s, 3),
                                    "wall": None if w is None else round(1 - w, 3)}
    o, b = out["paired"]["ours_over_baseline_cpu"]["median"], out["paired"]["ours_over_baseline_wall"]["median"]
    out["ours_vs_baseline"] = {"cpu_ratio": o, "wall_ratio": b,
                               "cpu_speedup": None if not o else round(1 / o, 2),
                               "wall_speedup": None if not b else round(1 / b, 2)}
    t = out["paired"]["ours_over_baseline_1thread_wall"]["median"]
    out["ours_vs_baseline_1thread"] = {"cpu_ratio": out["paired"]["ours_over_baseline_1thread_cpu"]["median"],
                                       "wall_ratio": t, "wall_speedup": None if not t else round(1 / t, 2)}
    return out
