"""Helpers of the p4cs PTF conformance suite (P4Runtime client, base test, packets)."""
