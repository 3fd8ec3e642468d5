"""FDRL core: the model and everything training and run time must agree on.

Nothing in here imports `train`, `export` or `stream`. Heavy dependencies (torch, ctranslate2,
transformers) are imported by the submodules that need them, so `import fdrl_core` stays cheap and
the onnxruntime/TensorRT run-time can use the config, labels and tokenizer without torch.
"""

from fdrl_core.config import FDRLConfig
from fdrl_core.labels import IEMOCAP4, LabelSet

__all__ = ["FDRLConfig", "LabelSet", "IEMOCAP4"]
__version__ = "0.1.0"
