"""The results pipeline: what a run and a study write, and how it is read back.

One module a concept, used by the engine, the study, the report and the reproductions alike:

- :mod:`~poolstride.results.io`: atomic writes, JSON reads with one clear error, JSON cleaning;
- :mod:`~poolstride.results.schema`: the schema strings of every file poolstride writes;
- :mod:`~poolstride.results.stats`: mean, t/bootstrap intervals, paired tests, Holm, verdicts;
- :mod:`~poolstride.results.format`: numbers for people (CIs, signed deltas, counts with k/M/G, durations).
- :mod:`~poolstride.results.study`: a study directory's layout (run directories) and the reader of ``study.json``.
"""
