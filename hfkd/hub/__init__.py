"""Model cards for students, pushing a student (its top-level files and its ONNX export) to the Hub, and exporting a
student to ONNX / INT8 with an accuracy gate on the run's domains."""

from .card import CARD_FILE, EXPORT_DIR, base_model_of, make_model_card, write_model_card
from .export import ExportGateError, OnnxClassifier, check_export, export_onnx, export_student, quantize_int8
from .push import STUDENT_FILES, HubError, push_student, student_files, warn_if_push_will_fail

__all__ = [
    "CARD_FILE",
    "EXPORT_DIR",
    "STUDENT_FILES",
    "ExportGateError",
    "HubError",
    "OnnxClassifier",
    "base_model_of",
    "check_export",
    "export_onnx",
    "export_student",
    "make_model_card",
    "push_student",
    "quantize_int8",
    "student_files",
    "warn_if_push_will_fail",
    "write_model_card",
]
