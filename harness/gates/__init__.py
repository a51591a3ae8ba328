"""Gates: named values -> pass/warn/fail verdicts -> the run's verdict."""
