"""ASE-MLLM PySide6 viewer."""
