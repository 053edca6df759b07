"""Tripwire, not TensorRT: importing this ends the process with exit code 97 (see tests/conftest.py)."""

import os
import sys

sys.stderr.write("TRIPWIRE: tensorrt was imported\n")
sys.stderr.flush()
os._exit(97)
