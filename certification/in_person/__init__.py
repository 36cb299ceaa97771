"""The rungs below the face check: home visits and service-point appointments, certification in
person by an operator, and appeals against a withheld payment or a failed check."""
