"""Counterexamples as data: field names and diffs (naming), the ITF trace record and its strict
loader (itf), replay (replay), networkx graphs and rendering (graph), scenario files (scenario_file)
and the facade the command line uses (trace)."""
