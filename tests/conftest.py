"""Suite-wide settings: one math thread per process.

Tests start worker processes beside the test process on a 2-core machine; two torch threads each then spin
against each other (a tiny-model test went from 1 s to 15 s). Set before torch is imported; children inherit it.
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
