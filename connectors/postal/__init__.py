"""Postal delivery (bưu chính): a simulator of the order that sends paper results to the citizen."""
