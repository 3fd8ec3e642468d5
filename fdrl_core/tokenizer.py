"""Text tokenisation with the `tokenizers` library only, so the ONNX/TensorRT run-time tokenises
exactly like training did without importing torch or transformers."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fdrl_core.assets import text_model_dir


class TextTokenizer:
    def __init__(self, model_dir: str | Path | None = None, max_tokens: int = 128):
        from tokenizers import Tokenizer

        self.model_dir = text_model_dir(model_dir, tokenizer_only=True)
        self.tok = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self.tok.no_padding()
        self.tok.enable_truncation(max_tokens)
        self.max_tokens = max_tokens
        self.pad_id = self.tok.token_to_id("[PAD]") or 0

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """ids [B, T] int64 and mask [B, T] int64. Empty (or whitespace) text gets no valid token:
        FDRL then treats the item as speech-only instead of classifying [CLS][SEP]."""
        encs = [self.tok.encode(t).ids if t and t.strip() else [] for t in texts]
        width = max(1, max(len(e) for e in encs))
        ids = np.full((len(texts), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(texts), width), dtype=np.int64)
        for i, e in enumerate(encs):
            ids[i, : len(e)] = e
            mask[i, : len(e)] = 1
        return ids, mask
