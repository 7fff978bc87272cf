"""Export an extracted subnet: ONNX (verified in ONNX Runtime), int8 ONNX, or a standalone torch checkpoint."""

from nasforge.export.onnx import OnnxExportReport, export_onnx, run_onnx
from nasforge.supernet.standalone import load_standalone, save_standalone

__all__ = ["OnnxExportReport", "export_onnx", "load_standalone", "run_onnx", "save_standalone"]
