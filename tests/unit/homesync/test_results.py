"""The results the actions hand up: their JSON form is what `--json` printed before
they were typed, and what the server is sent is the report and nothing else."""

import json

from hypothesis import given, strategies as st

from homesync import console
from homesync.results import BackupResult

texts = st.text(max_size=30)
sizes = st.integers(min_value=0, max_value=2**50)


@given(name=texts, start=st.floats(0, 2e9), took=st.floats(0, 1e5), files=sizes, original=sizes, compressed=sizes,
       deduplicated=sizes, warnings=st.lists(texts, max_size=3), indexed=st.booleans())
def test_a_backup_result_reads_as_the_report_and_its_local_facts(name, start, took, files, original, compressed,
                                                                 deduplicated, warnings, indexed):
    result = BackupResult(name=name, start=start, end=start + took, files=files, original_size=original,
                          compressed_size=compressed, deduplicated_size=deduplicated,
                          result="warning" if warnings else "success", error="; ".join(warnings),
                          warnings=warnings, indexed=indexed)
    report = result.report()
    assert set(report) == {"name", "start", "end", "files", "original_size", "compressed_size", "deduplicated_size",
                           "result"} | ({"error"} if result.error else set())
    assert report["original_size"] == original and report["end"] == start + took
    shown = json.loads(console.json_text({"backup": result}))["backup"]
    assert shown == json.loads(json.dumps(dict(report, duration=result.duration, warnings=warnings,
                                               indexed=indexed)))
