"""The schema strings of every file poolstride writes (``docs/study-format.md``).

A reader refuses a file whose ``schema`` it does not know, naming both; a writer stamps one of these.
"""

from __future__ import annotations

STUDY = "poolstride.study/1"  # <study>/study.json
RUN = "poolstride.run/1"  # <study>/runs/<variant>/seed<k>/result.json
RUNCONFIG = "poolstride.runconfig/1"  # <run dir>/config.json
SUMMARY = "poolstride.summary/1"  # <study>/summary.json
REPORT = "poolstride.report/1"  # <study>/report/report.json
REPRODUCTION = "poolstride.reproduction/1"  # reproduce/<name>/claims.json
