"""Known-wrong answers, one module per lesson: ASSIGNMENT and MUTANTS (see graders.submissions)."""
