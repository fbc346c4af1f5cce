"""Social insurance (BHXH): a simulator of the health-insurance card and funeral allowance services."""
