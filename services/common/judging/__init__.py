"""Scoring one answer, as the judge service scores candidates and the router scores live
answers: the programmatic judges (over services/common/answer_checks.py), the LLM judge, the
composite with gates, and `build_judge` from a checked spec (services/common/specs/judge.py)."""
