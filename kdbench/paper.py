"""The paper's own numbers (Hasan & Mahdy, Tables 1 and 2), to print beside ours.

Keys: (dataset, teacher plugin or None, student qubits or None); values: (accuracy %, Δ %).
A student row has teacher None; a teacher row has qubits None.
"""

from __future__ import annotations

PAPER: dict[tuple[str, str | None, int | None], tuple[float, float | None]] = {
    ("MNIST 0-5", None, 3): (96.56, None),
    ("MNIST 0-7", None, 3): (93.75, None),
    ("MNIST 0-7", None, 4): (93.83, None),
    ("MNIST 0-5", "alexnet", None): (99.72, None),
    ("MNIST 0-7", "alexnet", None): (99.51, None),
    ("MNIST 0-5", "lenet", None): (99.50, None),
    ("MNIST 0-7", "lenet", None): (99.16, None),
    ("MNIST 0-5", "ensemble", None): (99.73, None),
    ("MNIST 0-7", "ensemble", None): (99.58, None),
    ("MNIST 0-5", "alexnet", 3): (97.44, 0.88),
    ("MNIST 0-7", "alexnet", 3): (94.92, 1.17),
    ("MNIST 0-7", "alexnet", 4): (94.17, 0.34),
    ("MNIST 0-5", "lenet", 3): (97.89, 1.33),
    ("MNIST 0-7", "lenet", 3): (93.75, 0.00),
    ("MNIST 0-7", "lenet", 4): (94.33, 0.50),
    ("MNIST 0-5", "ensemble", 3): (97.33, 0.77),
    ("MNIST 0-7", "ensemble", 3): (95.42, 1.67),
    ("MNIST 0-7", "ensemble", 4): (94.00, 0.17),
    ("FashionMNIST 0-5", None, 3): (65.00, None),
    ("FashionMNIST 0-7", None, 3): (68.00, None),
    ("FashionMNIST 0-7", None, 4): (74.25, None),
    ("FashionMNIST 0-5", "alexnet", None): (94.90, None),
    ("FashionMNIST 0-7", "alexnet", None): (91.64, None),
    ("FashionMNIST 0-5", "lenet", None): (91.57, None),
    ("FashionMNIST 0-7", "lenet", None): (85.97, None),
    ("FashionMNIST 0-5", "ensemble", None): (95.67, None),
    ("FashionMNIST 0-7", "ensemble", None): (91.79, None),
    ("FashionMNIST 0-5", "alexnet", 3): (83.44, 18.44),
    ("FashionMNIST 0-7", "alexnet", 3): (73.42, 5.42),
    ("FashionMNIST 0-7", "alexnet", 4): (75.42, 1.17),
    ("FashionMNIST 0-5", "lenet", 3): (77.00, 12.00),
    ("FashionMNIST 0-7", "lenet", 3): (68.67, 0.67),
    ("FashionMNIST 0-7", "lenet", 4): (75.83, 1.58),
    ("FashionMNIST 0-5", "ensemble", 3): (67.89, 2.89),
    ("FashionMNIST 0-7", "ensemble", 3): (74.42, 6.42),
    ("FashionMNIST 0-7", "ensemble", 4): (72.50, 0.00),
}

# The students whose rows the paper's numbers describe, in either reading (DESIGN.md).
PAPER_STUDENTS = ("released-q3", "released-q4", "paper-q3", "paper-q4", "pqc")
