"""The checking engines over one model: the symbolic state they share (symbolic), bounded model
checking (bmc), explicit-state search (bfs), k-induction (induction), random walks (simulate),
and the scenario checker (scenarios)."""
