"""Claims, statistics over seeds, verdicts and reports."""
