"""The browser suite: a real Chromium driven by Playwright through the real mitmdump.

A package so that its module names (test_csp, …) do not clash with tests/unit's.
"""
