"""Synthetic emotional speech corpus: espeak-ng and festival voices with emotion-dependent prosody.

    from train.synth import SynthConfig, generate_corpus, synthesize
    manifest = generate_corpus(SynthConfig(out="data/synth"))
    pcm = synthesize("I miss my old friends so much.", "sad", "espeak:en+f3", rng=0)  # int16 @ 16 kHz

CLI: python -m train.synth --help
"""

from .corpus import CARRIERS, SynthConfig, generate_corpus
from .engines import render, synthesize
from .prosody import EMOTION_PROSODY, LABELS, Prosody, sample_prosody
from .sentences import Sentence, sentence_bank
from .voices import ALL_VOICES, SynthError, Voice, get_voice, select_voices

__all__ = ["ALL_VOICES", "CARRIERS", "EMOTION_PROSODY", "LABELS", "Prosody", "Sentence", "SynthConfig",
           "SynthError", "Voice", "generate_corpus", "get_voice", "render", "sample_prosody", "select_voices",
           "sentence_bank", "synthesize"]
