"""The judge service: scores candidates and keeps the best k as chosen, the rest as rejected."""
