"""Reading graphs: let-bound formulas and SymPy."""
def pretty(t): raise NotImplementedError
def to_sympy(t): raise NotImplementedError
