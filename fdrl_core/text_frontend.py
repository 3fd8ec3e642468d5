"""Token states for FDRL from all-MiniLM-L6-v2 (or any BERT-style encoder named by path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fdrl_core.tokenizer import TextTokenizer


def load_text_encoder(model_dir: Path):
    """The Hugging Face encoder in eval mode, from local files only (export wraps it too)."""
    from transformers import AutoModel

    try:
        model = AutoModel.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError) as e:
        raise RuntimeError(f"cannot load text encoder from {model_dir}: {str(e).splitlines()[0]}") from None
    return model.eval()


class TextFrontend:
    """Last-layer token states [T, d] and a mask; empty text gives zero valid tokens."""

    def __init__(self, model_path: str | Path | None = None, max_tokens: int = 128, threads: int | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.tokenizer = TextTokenizer(model_path, max_tokens)
        self.model_dir = self.tokenizer.model_dir
        self.model = load_text_encoder(self.model_dir)
        self.dim = int(self.model.config.hidden_size)

    @property
    def name(self) -> str:
        return f"hf:{self.model_dir.parent.name}/{self.model_dir.name}"

    def __call__(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Batched: states [B, T, d] float32, mask [B, T] bool."""
        import torch

        ids, mask = self.tokenizer(texts)
        with torch.inference_mode():
            states = self.model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask))
        return states.last_hidden_state.float().numpy(), mask.astype(bool)

    def states(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        """One utterance, trimmed to its tokens: states [T, d] (T may be 0) and mask [T]."""
        states, mask = self([text])
        n = int(mask[0].sum())
        return states[0, :n], mask[0, :n]
