"""Residence registration (cư trú, the police): a simulator of its permanent-residence services."""
