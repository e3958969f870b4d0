"""Benchmarks that print numbers, run from the project root as ``python -m bench.<name>``.

A package, so that its modules are ``bench.drain``, ``bench.harness``… and never top-level
names: a script run from this folder, or a server started with it on the path, would otherwise
find a bench module before an app of the same name (``ledger``) and fail to start Django.
"""
