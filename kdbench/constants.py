"""Names and defaults that several layers share (config, matrix, run, report). It imports
nothing of kdbench, so that any module can use them without an import circle."""

NO_TEACHER = "none"  # the teacher of the student trained alone
NO_DISTILLER = "none"  # the distiller of a cell without a teacher
DEFAULT_DISTILLER = "paper"  # the instance [distill] configures, and the matrix's default
# `[train] selection` that keeps the best TEST epoch (the released notebooks'): flagged in reports.
BEST_TEST = "best-test"
# The equivalence margin by default (a fraction: 1 point of accuracy).
MARGIN = 0.01
