"""Checking the product's central promise in tests: the output is the input with one insertion."""

from __future__ import annotations


def common_prefix_length(a: bytes, b: bytes) -> int:
    """Length of the common prefix, found in blocks so that a 20 MB page costs no byte loop."""
    size = min(len(a), len(b))
    start, block = 0, 4096
    while start < size and a[start : start + block] == b[start : start + block]:
        start += block
    end = min(start + block, size)
    while start < end and a[start] == b[start]:
        start += 1
    return start


def split_insertion(original: bytes, output: bytes, *, starts_with: bytes = b"<") -> tuple[int, bytes]:
    """(offset, inserted) if `output` is `original` with one contiguous insertion; fails otherwise."""
    added = len(output) - len(original)
    assert added > 0, "nothing was inserted"
    prefix = common_prefix_length(original, output)
    assert output[prefix + added :] == original[prefix:], "the output differs from the input by more than one insertion"
    # Where the snippet ends like the page goes on, several offsets explain the output: prefer the
    # one where the insertion is a whole element.
    first = prefix
    while first > 0 and output[first - 1] == output[first - 1 + added]:
        first -= 1
    offset = next((k for k in range(first, prefix + 1) if output[k : k + added].startswith(starts_with)), first)
    return offset, output[offset : offset + added]
