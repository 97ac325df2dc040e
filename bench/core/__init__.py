"""The foundation floor: errors, audio I/O and resampling, weights files, the name registry, the content cache and
statistics. It imports nothing else of codecbench (``tests/test_import_contract.py`` enforces it); every other
subpackage may import it.
"""
