"""Parallel jobs and ranks share the cache: an entry being written is waited for, and the first writer wins."""

from __future__ import annotations


def test_a_cache_entry_being_written_is_waited_for_never_deleted(tmp_path):
    """A writer holds the entry's lock from start() to finish(); a reader that finds no entry waits for it
    instead of treating the writer's files as a dead job's partial entry."""
    import threading
    import time

    from runner.cache import CacheEntry

    writer = CacheEntry(tmp_path, "finetuned", "k1", "TOFU target model")
    building = writer.start()
    (building / "trainable.safetensors").write_bytes(b"weights")
    assert not writer.path.exists()  # written aside, invisible to readers until complete

    answer = {}
    reader = threading.Thread(target=lambda: answer.update(ready=CacheEntry(tmp_path, "finetuned", "k1", "x").ready()))
    reader.start()
    time.sleep(0.5)
    assert reader.is_alive() and building.exists()  # waiting, and the files in progress are untouched
    writer.finish({"ok": True})
    reader.join(timeout=10)
    assert answer == {"ready": True}
    assert (writer.path / "trainable.safetensors").read_bytes() == b"weights" and writer.complete()
    assert not building.exists()  # renamed into place


def test_a_second_writer_of_the_same_entry_keeps_the_first(tmp_path):
    from runner.cache import CacheEntry

    first, second = (CacheEntry(tmp_path, "models", "k2", "tiny test model") for _ in range(2))
    a = first.start()
    (a / "w").write_text("first")
    first.finish()
    b = second.start()  # built concurrently (both saw a miss); lands after the first
    (b / "w").write_text("second")
    second.finish()
    assert (first.path / "w").read_text() == "first" and not b.exists()
    assert not list(first.path.parent.glob(".k2.tmp-*"))
