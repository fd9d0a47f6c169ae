"""Model cards for students, and pushing a student (its top-level files only) to the Hub."""

from .card import CARD_FILE, base_model_of, make_model_card, write_model_card
from .push import STUDENT_FILES, HubError, push_student, student_files, warn_if_push_will_fail

__all__ = [
    "CARD_FILE",
    "STUDENT_FILES",
    "HubError",
    "base_model_of",
    "make_model_card",
    "push_student",
    "student_files",
    "warn_if_push_will_fail",
    "write_model_card",
]
