"""Claim holders and counted occurrences are tokens that never repeat (khook.tokens)."""

from __future__ import annotations

import os
import re
import threading

from khook.tokens import new_token


def test_tokens_are_32_hex_digits_and_never_repeat_across_threads() -> None:
    made: list[list[str]] = [[] for _ in range(8)]

    def make(out: list[str]) -> None:
        out.extend(new_token() for _ in range(5_000))

    threads = [threading.Thread(target=make, args=(out,)) for out in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    tokens = [token for out in made for token in out]
    assert len(set(tokens)) == len(tokens) == 40_000
    assert all(re.fullmatch(r"[0-9a-f]{32}", token) for token in tokens)


def test_a_forked_worker_never_makes_its_parents_tokens() -> None:
    """gunicorn forks its workers from one master: a child that went on with the parent's
    prefix and counter would make the very tokens the parent (or a sibling) makes next."""
    new_token()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next token, to the parent
        try:
            os.write(write, new_token().encode())
        finally:
            os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    parent = new_token()
    assert re.fullmatch(r"[0-9a-f]{32}", child)
    assert child != parent
    assert child[:16] != parent[:16]  # a prefix of its own
