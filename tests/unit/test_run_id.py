from shared.domain.run_ids import derive_run_id


def test_run_id_is_stable_readable_and_changes_with_key_or_content() -> None:
    first = derive_run_id("configs/SciQ Full.json", b"{}")
    assert first == derive_run_id("configs/SciQ Full.json", b"{}")
    assert first.startswith("sciq-full-") and len(first) == len("sciq-full-") + 12
    assert derive_run_id("configs/SciQ Full.json", b"{ }") != first
    assert derive_run_id("configs/other.json", b"{}") != first
    assert derive_run_id("configs/日本.json", b"{}").startswith("run-")
