"""Performance benchmark: ``python -m bench`` or ``jak-cds bench`` (see ``bench/__main__.py``).

In-process time per hook call next to the unavoidable JSON floor and a no-op
Flask route, growth with irrelevant data, and HTTP throughput under a bounded
concurrent load with the production server next to a no-op app on the same
server. Prints a table and writes ``bench/results.json``.

``python -m bench.stages``: where the time of one hook call goes, step by step (``bench/stages.py``).
"""
