"""The family rung: a relative, linked with the elder's own consent, runs the elder's face check from
their phone, recorded as assisted."""
