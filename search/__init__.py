"""How the model's state space is searched, and what is done with a counterexample."""
