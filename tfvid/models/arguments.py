"""Argument checks shared by the model builders."""
from __future__ import annotations


def check_choice(owner: str, what: str, value, choices, note: str = "") -> None:
    """ValueError "<owner>: unknown <what> <value>; choose one of <choices>[ (<note>)]" when
    `value` is not in `choices`."""
    if value not in choices:
        raise ValueError(f"{owner}: unknown {what} {value!r}; choose one of {choices}"
                         + (f" ({note})" if note else ""))
