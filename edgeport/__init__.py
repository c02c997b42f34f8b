"""edgeport: PyTorch checkpoint -> ONNX -> TFLite fp32/INT8, validated and timed on x86 and ARM."""
from edgeport import native  # noqa: F401  (quiet native logging before TF/ORT load)
from edgeport.errors import EdgeportError

__version__ = "0.1.0"
__all__ = ["EdgeportError", "__version__"]
