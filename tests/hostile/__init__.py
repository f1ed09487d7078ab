"""Hostile-input suite: bad files, hostile sidecars (and part B's protocol fuzzing / kill -9 tests).

`badfiles.make_bad_files(folder)` is shared with bench/hostile.py, which runs the same kinds for longer.
"""
