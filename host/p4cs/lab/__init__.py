"""The lab: namespace and Mininet topologies, lab origin servers, traffic generators and the demo.

Nothing here is on the content switch's own path: it builds the networks that tests, benchmarks
and `p4cs demo` run the switch in.
"""
